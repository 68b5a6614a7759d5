#!/usr/bin/env node
// One-time setup on a fresh machine: npm packages (Deno itself comes from npm), Mesa's software
// Vulkan driver when no GPU driver is installed and Chromium for the browser test when it is
// missing (Debian, as root), then scripts/prepare.mjs.
// A failing step prints one line saying what to run, never a stack trace; when another apt/dpkg
// process holds the package lock (unattended upgrades on a fresh machine), it waits for it.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const LOCK_WAIT_S = Number(process.env.EDGE_PEFT_APT_LOCK_WAIT_S ?? 600);

function fail(message) {
  console.error(`[setup] error: ${message}`);
  process.exit(1);
}

/** Runs a command with inherited output; on failure, exits with one line. */
function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { stdio: "inherit", cwd: root });
  if (r.error) fail(`${what}: cannot run ${cmd} (${r.error.message})`);
  if (r.status !== 0) fail(`${what} failed (exit ${r.status ?? r.signal}); see the output above`);
}

const sleep = (s) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, s * 1000);

/**
 * apt-get with its stderr captured: while another process holds the apt/dpkg lock it waits (up to
 * LOCK_WAIT_S, saying so every 30 s) and retries; any other failure exits with one line.
 */
function aptGet(args, pkgs) {
  const start = Date.now();
  let lastNote = -Infinity;
  for (;;) {
    const r = spawnSync("apt-get", ["-o", "DPkg::Lock::Timeout=5", ...args], {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    if (r.status === 0) return;
    const err = `${r.error?.message ?? ""}${r.stderr ?? ""}`;
    const waited = (Date.now() - start) / 1000;
    if (/Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock|is another process using it/i.test(err)) {
      if (waited >= LOCK_WAIT_S) {
        fail(`another apt/dpkg process still holds the package lock after ${Math.round(waited)} s; when it has finished, run: npm run setup (or install them yourself: apt-get install -y ${pkgs})`);
      }
      if (waited - lastNote >= 30) {
        console.error(`[setup] another apt/dpkg process holds the package lock (${Math.round(waited)} s so far); waiting for it (up to ${LOCK_WAIT_S} s)`);
        lastNote = waited;
      }
      sleep(1);
      continue;
    }
    const last = err.trim().split("\n").filter(Boolean).pop() ?? `exit ${r.status}`;
    fail(`apt-get ${args.join(" ")} failed: ${last}; install them yourself: apt-get install -y ${pkgs}, then run npm run setup`);
  }
}

if (!existsSync(join(root, "node_modules/.bin/deno")) || !existsSync(join(root, "node_modules/.package-lock.json"))) {
  console.error("[setup] installing npm packages");
  // package-lock.json lists every platform's optional packages (as npm 11 writes it), so this
  // install leaves it unchanged and a fresh clone's `git status` clean.
  run("npm", ["install", ...(process.env.CI ? [] : ["--no-audit", "--no-fund"])], "npm install");
}

const icdDirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"];
const hasVulkanDriver = icdDirs.some((d) => existsSync(d) && readdirSync(d).some((f) => f.endsWith(".json")));
const hasEgl = existsSync("/usr/lib/x86_64-linux-gnu/libEGL_mesa.so.0") || existsSync("/usr/lib/aarch64-linux-gnu/libEGL_mesa.so.0");
const canApt = process.platform === "linux" && process.getuid?.() === 0 && existsSync("/usr/bin/apt-get");
let aptUpdated = false;
function aptInstall(pkgs) {
  if (!aptUpdated) aptGet(["update", "-qq"], pkgs);
  aptUpdated = true;
  aptGet(["install", "-y", "-qq", ...pkgs.split(" ")], pkgs);
}

if ((!hasVulkanDriver || !hasEgl) && process.platform === "linux") {
  const pkgs = "mesa-vulkan-drivers libegl1 libegl-mesa0 libgl1-mesa-dri";
  if (canApt) {
    console.error(`[setup] installing ${pkgs} (software GPU drivers)`);
    aptInstall(pkgs);
  } else {
    console.error(`[setup] no Vulkan driver found: install a GPU driver or, on Debian/Ubuntu, sudo apt-get install ${pkgs}`);
  }
}

// tests/web drives the page in Debian's chromium (puppeteer-core never downloads a browser).
if (process.platform === "linux" && !process.env.CHROMIUM && !["/usr/bin/chromium", "/usr/bin/chromium-browser"].some(existsSync)) {
  if (canApt) {
    console.error("[setup] installing chromium (for the browser test, tests/web)");
    aptInstall("chromium");
  } else {
    console.error("[setup] no Chromium found: the browser test (tests/web) needs it: sudo apt-get install chromium (or set CHROMIUM to a Chromium binary)");
  }
}

run("node", ["scripts/prepare.mjs"], "node scripts/prepare.mjs (shaders and WASM)");
