#!/usr/bin/env node
// Bundles the library (mod.ts) and the CLI (src/cli/bin.ts) into single ES modules in dist/,
// with WGSL and WASM already inlined by scripts/prepare.mjs. The runtime GPU bindings
// (bun-webgpu, webgpu) stay external: they are native packages loaded only on their runtime.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
execFileSync(process.execPath, [join(root, "scripts/prepare.mjs")], { stdio: "inherit" });
const common = {
  bundle: true,
  format: "esm",
  platform: "node",
  target: "es2022",
  external: ["bun-webgpu", "webgpu", "bun:ffi"],
  // yaml's "node" export is CommonJS that require()s "process", which an ES module bundle cannot;
  // its ES module build (the package's "default" export) runs on every runtime.
  alias: { yaml: "./node_modules/yaml/browser/index.js" },
  logLevel: "warning",
  absWorkingDir: root,
};
await build({ ...common, entryPoints: ["mod.ts"], outfile: "dist/edge-peft.js" });
await build({ ...common, entryPoints: ["src/cli/bin.ts"], outfile: "dist/cli.js" });
console.error("[bundle] dist/edge-peft.js, dist/cli.js");
