/** Every shader also compiles under Dawn/Tint (Bun and Node), not only under Deno's wgpu/naga. */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));

Deno.test("all WGSL shaders compile under Dawn (Node webgpu)", async () => {
  // Inside the repo (dist/ is git-ignored) so Node resolves `webgpu` from node_modules.
  const out = join(root, "dist", "dawn_compile_check.mjs");
  execFileSync("node_modules/.bin/esbuild", [
    "--bundle", "--platform=node", "--format=esm", "--external:webgpu", "--external:bun-webgpu", "--log-level=warning",
    "tests/runtimes/dawn_compile_entry.ts", `--outfile=${out}`,
  ], { cwd: root });
  const r = spawnSync("node", [out], { cwd: root, encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /\d+ shaders, 0 with errors/);
});
