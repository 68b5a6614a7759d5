#!/usr/bin/env node
// One-time setup on a fresh machine: npm packages (Deno itself comes from npm), Mesa's software
// Vulkan driver when no GPU driver is installed (Debian, as root), then scripts/prepare.mjs.
import { execSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const run = (cmd) => execSync(cmd, { stdio: "inherit", cwd: root });
const quiet = process.env.CI ? "" : " --no-audit --no-fund";

if (!existsSync(join(root, "node_modules/.bin/deno")) || !existsSync(join(root, "node_modules/.package-lock.json"))) {
  console.error("[setup] installing npm packages");
  // `npm install` (not `npm ci`): lock files written on Linux omit other platforms' optional
  // packages, which `npm ci` then refuses; install still follows the lock for everything present.
  run(`npm install${quiet}`);
}

const icdDirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"];
const hasVulkanDriver = icdDirs.some((d) => existsSync(d) && readdirSync(d).some((f) => f.endsWith(".json")));
const hasEgl = existsSync("/usr/lib/x86_64-linux-gnu/libEGL_mesa.so.0") || existsSync("/usr/lib/aarch64-linux-gnu/libEGL_mesa.so.0");
if ((!hasVulkanDriver || !hasEgl) && process.platform === "linux") {
  const pkgs = "mesa-vulkan-drivers libegl1 libegl-mesa0 libgl1-mesa-dri";
  if (process.getuid?.() === 0 && existsSync("/usr/bin/apt-get")) {
    console.error(`[setup] installing ${pkgs} (software GPU drivers)`);
    run(`apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${pkgs} >/dev/null`);
  } else {
    console.error(`[setup] no Vulkan driver found: install a GPU driver or, on Debian/Ubuntu, sudo apt-get install ${pkgs}`);
  }
}

run(`node scripts/prepare.mjs`);
