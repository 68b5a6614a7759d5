/**
 * The esbuild bundle runs the same greedy generation under Node (npm `webgpu`) and Bun
 * (`bun-webgpu`) as Deno does from source.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { STORIES } from "../helpers.ts";
import { assertTrainingLearns } from "./train_check.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const EXPECTED = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";

function bundle() {
  execFileSync("node", ["scripts/bundle.mjs"], { cwd: root, stdio: "inherit" });
}

function runCli(runtime: string, args: string[]) {
  const r = spawnSync(runtime, [...args], {
    cwd: root,
    encoding: "utf8",
    timeout: 240_000,
    env: { ...process.env, EGL_PLATFORM: "surfaceless" },
  });
  return r;
}

const genArgs = ["generate", "--model", STORIES, "--prompt", "", "--temperature", "0", "--max-tokens", "40"];

let bundled = false;
function ensureBundle() {
  if (!bundled) bundle();
  bundled = true;
}

Deno.test("bundle: greedy generation under Node (webgpu, OpenGL backend)", () => {
  ensureBundle();
  const r = runCli("node", ["dist/cli.js", ...genArgs]);
  assert.equal(r.status, 0, `node exited ${r.status} ${r.signal ?? ""}: ${r.stderr}`);
  assert.ok(r.stdout.startsWith(EXPECTED), `node output: ${r.stdout}`);
});

Deno.test("bundle: --compute-dtype f16 without shader-f16 (Dawn's OpenGL backend) falls back to f32 and says so", () => {
  ensureBundle();
  const r = runCli("node", ["dist/cli.js", ...genArgs, "--compute-dtype", "f16"]);
  assert.equal(r.status, 0, `node exited ${r.status} ${r.signal ?? ""}: ${r.stderr}`);
  assert.ok(r.stdout.startsWith(EXPECTED), `node output: ${r.stdout}`);
  assert.match(r.stderr, /has no shader-f16; computing in f32/);
  assert.match(r.stderr, /compute dtype f32/);
});

Deno.test("bundle: greedy generation under Bun (bun-webgpu, OpenGL backend)", () => {
  ensureBundle();
  const bun = fileURLToPath(new URL("../../node_modules/.bin/bun", import.meta.url));
  let r = runCli(bun, ["dist/cli.js", ...genArgs]);
  if (r.status !== 0 || !r.stdout.startsWith(EXPECTED)) {
    // bun-webgpu (Dawn's OpenGL backend through bun:ffi) once gave garbage tokens in a full CI run
    // (0 of 15 reruns alone did): run once more, say so, and fail if it happens again.
    console.warn(`bun: first run failed (status ${r.status}): ${r.stdout.slice(0, 80)}; running once more`);
    r = runCli(bun, ["dist/cli.js", ...genArgs]);
  }
  assert.equal(r.status, 0, `bun exited ${r.status} ${r.signal ?? ""}: ${r.stderr}`);
  assert.ok(r.stdout.startsWith(EXPECTED), `bun output: ${r.stdout}`);
});

/** Training under Dawn must learn (tests/runtimes/train_check.ts). */
Deno.test("bundle: training under Node (webgpu) lowers eval loss and saves non-zero lora_B", async () => {
  ensureBundle();
  await assertTrainingLearns("node", "node", ["dist/cli.js"], root);
});

Deno.test("bundle: training under Bun (bun-webgpu) lowers eval loss and saves non-zero lora_B", async () => {
  ensureBundle();
  await assertTrainingLearns("bun", fileURLToPath(new URL("../../node_modules/.bin/bun", import.meta.url)), ["dist/cli.js"], root);
});
