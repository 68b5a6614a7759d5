#!/usr/bin/env node
// Bundles the library (mod.ts) and the CLI (src/cli/bin.ts) into single ES modules in dist/,
// with WGSL and WASM already inlined by scripts/prepare.mjs. The runtime GPU bindings
// (bun-webgpu, webgpu) stay external: they are native packages loaded only on their runtime.
// Also bundles browser.ts for web pages (dist/edge-peft.browser.js): each module with a
// `<name>.browser.ts` twin beside it (src/util/host.ts) is replaced by the twin, and the build
// fails if any node:, bun: or native-binding import is left in it.
// `--browser` builds only the browser bundle (what `deno task web` needs).
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
execFileSync(process.execPath, [join(root, "scripts/prepare.mjs")], { stdio: "inherit" });
const common = {
  bundle: true,
  format: "esm",
  target: "es2022",
  logLevel: "warning",
  absWorkingDir: root,
};
const serverSide = {
  ...common, platform: "node", external: ["bun-webgpu", "webgpu", "bun:ffi"],
  // yaml's "node" export is CommonJS that require()s "process", which an ES module bundle cannot;
  // its ES module build (the package's "default" export) runs on every runtime.
  alias: { yaml: "./node_modules/yaml/browser/index.js" },
};

/** Resolves `./x.ts` to `./x.browser.ts` where that twin exists: the runtime split, kept to a few edge modules. */
const browserTwins = {
  name: "browser-twins",
  setup(b) {
    b.onResolve({ filter: /^\.\.?\/.*\.ts$/ }, (args) => {
      const twin = resolve(args.resolveDir, args.path.replace(/\.ts$/, ".browser.ts"));
      return existsSync(twin) ? { path: twin } : undefined;
    });
  },
};

/** The imports a page cannot load: node: and bun: built-ins, and the native WebGPU bindings. */
const SERVER_ONLY = /^(node:|bun:|bun-webgpu$|webgpu$)/;

async function buildBrowser() {
  const out = "dist/edge-peft.browser.js";
  const result = await build({ ...common, platform: "browser", entryPoints: ["browser.ts"], outfile: out, plugins: [browserTwins], metafile: true });
  const left = [];
  for (const [file, input] of Object.entries(result.metafile.inputs)) {
    for (const imp of input.imports) if (SERVER_ONLY.test(imp.path) || imp.external) left.push(`${file} imports ${imp.path}`);
  }
  if (left.length) throw new Error(`${out} must run in a web page, but it still has these imports:\n  ${left.join("\n  ")}`);
  const bytes = result.metafile.outputs[out].bytes;
  return `${out} (${(bytes / 1e6).toFixed(1)} MB, no node: imports)`;
}

const built = [];
if (!process.argv.includes("--browser")) {
  await build({ ...serverSide, entryPoints: ["mod.ts"], outfile: "dist/edge-peft.js" });
  await build({ ...serverSide, entryPoints: ["src/cli/bin.ts"], outfile: "dist/cli.js" });
  built.push("dist/edge-peft.js", "dist/cli.js");
}
built.push(await buildBrowser());
console.error(`[bundle] ${built.join(", ")}`);
