#!/usr/bin/env node
// Single-binary builds of the CLI (server included), with WGSL and WASM inlined
// (src/generated, by scripts/prepare.mjs):
//
//   node scripts/compile.mjs bun  [--out dist/edge-peft]        bun build --compile
//   node scripts/compile.mjs deno [--out dist/edge-peft-deno]   deno compile
//
// Bun: esbuild bundles src/cli/bin.ts first, rewriting the two runtime-computed imports
// (src/gpu/device.ts imports "bun-webgpu" through a variable; bun-webgpu imports its platform
// package through a template string) into static ones, so `bun build --compile` embeds
// bun-webgpu and its Dawn library (libwebgpu_wrapper.so, imported `with { type: "file" }`)
// in the executable; Bun extracts it for dlopen at run time. The binary needs nothing beside it.
//
// Deno: `deno compile` needs the denort runtime, which it downloads unless DENORT_BIN names a
// local copy; with neither it stops with a message saying so.
import { build } from "esbuild";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const [target, ...rest] = process.argv.slice(2);
const outIdx = rest.indexOf("--out");
const out = resolve(root, outIdx >= 0 ? rest[outIdx + 1] : target === "deno" ? "dist/edge-peft-deno" : "dist/edge-peft");

function die(msg) {
  console.error(`[compile] error: ${msg}`);
  process.exit(1);
}

if (target !== "bun" && target !== "deno") die("usage: node scripts/compile.mjs <bun|deno> [--out path]");
execFileSync(process.execPath, [join(root, "scripts/prepare.mjs")], { stdio: "inherit" });
mkdirSync(dirname(out), { recursive: true });

if (target === "bun") {
  const platformPkg = `bun-webgpu-${process.platform}-${process.arch}`;
  if (!existsSync(join(root, "node_modules", platformPkg))) die(`node_modules/${platformPkg} is missing: bun-webgpu has no Dawn library for this platform`);
  const staticImports = {
    name: "static-gpu-imports",
    setup(b) {
      b.onLoad({ filter: /src[\\/]gpu[\\/]device\.ts$/ }, (args) => {
        const src = readFileSync(args.path, "utf8");
        const next = src.replace(/const mod = "bun-webgpu";\s*\n(\s*)const bw = await import\(mod\)/, '$1const bw = await import("bun-webgpu")');
        if (next === src) die(`${args.path}: the bun-webgpu import changed; update scripts/compile.mjs`);
        return { contents: next, loader: "ts" };
      });
      b.onLoad({ filter: /node_modules[\\/]bun-webgpu[\\/]index\.js$/ }, (args) => {
        const src = readFileSync(args.path, "utf8");
        const next = src.replace("import(`bun-webgpu-${process.platform}-${process.arch}/index.ts`)", `import("${platformPkg}/index.ts")`);
        if (next === src) die(`${args.path}: its platform import changed; update scripts/compile.mjs`);
        return { contents: next, loader: "js" };
      });
    },
  };
  const bundle = join(root, "dist", "compile", "edge-peft-bun.mjs");
  await build({
    bundle: true,
    format: "esm",
    platform: "node",
    target: "esnext",
    // webgpu (Node's Dawn) is never loaded under Bun; the platform package's .so import is left to Bun.
    external: ["webgpu", "bun:ffi", `${platformPkg}/index.ts`],
    entryPoints: [join(root, "src/cli/bin.ts")],
    outfile: bundle,
    plugins: [staticImports],
    logLevel: "warning",
    absWorkingDir: root,
  });
  const bun = join(root, "node_modules/.bin/bun");
  const r = spawnSync(bun, ["build", "--compile", "--target=bun", bundle, "--outfile", out], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) die(`bun build --compile exited ${r.status}`);
  rmSync(join(root, "dist", "compile"), { recursive: true, force: true });
  console.error(`[compile] ${out} (Bun; Dawn embedded)`);
} else {
  const denort = process.env.DENORT_BIN;
  if (denort && !existsSync(denort)) die(`DENORT_BIN=${denort} does not exist`);
  if (!denort) {
    console.error("[compile] DENORT_BIN is not set: deno compile will try to download denort (set DENORT_BIN to a local denort to build offline)");
  }
  const deno = join(root, "node_modules/.bin/deno");
  const r = spawnSync(
    deno,
    ["compile", "-A", "--no-check", "--output", out, join(root, "src/cli/bin.ts")],
    { cwd: root, encoding: "utf8", env: process.env },
  );
  process.stderr.write(r.stderr ?? "");
  if (r.status !== 0) {
    if (!denort) {
      die(
        "deno compile could not get the denort runtime (no network?). Download denort for your platform " +
          "(https://dl.deno.land/release/v<deno version>/denort-<target>.zip) and set DENORT_BIN=/path/to/denort, " +
          "or build the Bun binary: node scripts/compile.mjs bun",
      );
    }
    die(`deno compile exited ${r.status}`);
  }
  console.error(`[compile] ${out} (Deno)`);
}
