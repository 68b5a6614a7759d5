/**
 * `merge`: the GGUF it writes generates, with no adapter, the same greedy text as the base with
 * the adapter applied unmerged; and `generate --quantize` runs a 4-bit base as loadModel does.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { main as merge } from "../../src/cli/merge.ts";
import { loadModel } from "../../src/api/model.ts";
import { STORIES, testGpu } from "../helpers.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const PROMPTS = ["Once upon a time", "The little dog"];
const greedy = { maxTokens: 24, temperature: 0 };

Deno.test("merge CLI: the merged GGUF's greedy text equals the unmerged adapter's (f32), f16 halves the file", async () => {
  const dir = await mkdtemp(join(tmpdir(), "merge-cli-"));
  const gpu = await testGpu();
  const base = await loadModel(STORIES, { gpu });
  try {
    // random non-zero B (init_lora_weights false) on every linear, so the adapter changes the text
    base.addAdapter("a", { r: 4, lora_alpha: 16, target_modules: "all-linear", init_lora_weights: false }, 7);
    await base.saveAdapter("a", join(dir, "adapter"));
    const expected: string[] = [], plain: string[] = [];
    for (const p of PROMPTS) {
      expected.push(await base.complete(p, { ...greedy, adapter: "a" }));
      plain.push(await base.complete(p, greedy));
    }
    assert.notDeepEqual(expected, plain, "the adapter changes the greedy text");

    await merge(["--model", STORIES, "--adapter", join(dir, "adapter"), "--out", join(dir, "merged.gguf")]);
    const merged = await loadModel(join(dir, "merged.gguf"), { gpu });
    try {
      for (const [i, p] of PROMPTS.entries()) assert.equal(await merged.complete(p, greedy), expected[i], p);
    } finally {
      merged.close();
    }

    await merge(["--model", STORIES, "--adapter", join(dir, "adapter"), "--out", join(dir, "merged16.gguf"), "--type", "f16"]);
    const [f32, f16] = [(await stat(join(dir, "merged.gguf"))).size, (await stat(join(dir, "merged16.gguf"))).size];
    assert.ok(f16 < 0.6 * f32, `f16 ${f16} vs f32 ${f32} bytes`);
    const m16 = await loadModel(join(dir, "merged16.gguf"), { gpu });
    try {
      assert.equal((await m16.complete(PROMPTS[0], greedy)).length > 0, true);
    } finally {
      m16.close();
    }
  } finally {
    base.close();
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("generate --quantize nf4 --double-quant: the 4-bit base loadModel gives, said on stderr", async () => {
  const q = await loadModel(STORIES, { gpu: await testGpu(), quantize: "nf4", doubleQuant: true });
  let expected: string;
  try {
    expected = PROMPTS[0] + await q.complete(PROMPTS[0], greedy);
  } finally {
    q.close();
  }
  const r = spawnSync(
    `${root}node_modules/.bin/deno`,
    ["run", "-A", "src/cli/bin.ts", "generate", "--model", STORIES, "--quantize", "nf4", "--double-quant", "--prompt", PROMPTS[0], "--temperature", "0", "--max-tokens", "24"],
    { cwd: root, encoding: "utf8", timeout: 120_000, env: process.env },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, expected + "\n");
  assert.match(r.stderr, /base nf4 \+ double quant \(blocksize 64\)/);
});
