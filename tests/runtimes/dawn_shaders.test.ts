/**
 * Every shader compiles and every pipeline builds under Dawn/Tint (Bun and Node), not only under
 * Deno's wgpu/naga, and a pipeline Dawn rejects throws a PeftError on both runtimes.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));
// Inside the repo (dist/ is git-ignored) so the runtimes resolve `webgpu` / `bun-webgpu` from node_modules.
const out = join(root, "dist", "dawn_checks.mjs");
let built = false;
function build() {
  if (built) return;
  execFileSync("node_modules/.bin/esbuild", [
    "--bundle", "--platform=node", "--format=esm", "--external:webgpu", "--external:bun-webgpu", "--external:bun:ffi", "--log-level=warning",
    "tests/runtimes/dawn_checks_entry.ts", `--outfile=${out}`,
  ], { cwd: root });
  built = true;
}

for (const [runtime, bin] of [["Node webgpu", "node"], ["Bun bun-webgpu", join(root, "node_modules/.bin/bun")]]) {
  Deno.test(`all WGSL shaders compile and all pipelines build under Dawn (${runtime}); rejected pipelines throw`, () => {
    build();
    const r = spawnSync(bin, [out], { cwd: root, encoding: "utf8", timeout: 180_000, env: { ...process.env, EGL_PLATFORM: "surfaceless" } });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /\d+ shaders, \d+ pipelines, 0 with errors/);
    assert.match(r.stdout, /rejected pipeline: GPU_VALIDATION/);
  });
}
