/**
 * Model families checked by llama.cpp itself (node-llama-cpp's prebuilt CPU binary, under Node:
 * tests/cli/llamacpp_greedy.mjs): llama.cpp loads each family's GGUF written by our writer (its
 * general.architecture, metadata keys, tensor names and q/k row convention: qwen2 and phi3 not
 * permuted, llama permuted; Llama 3's rope_freqs.weight; phi3's fused attn_qkv and ffn_up) and
 * its greedy ids equal ours for 32 tokens. llama.cpp has no sliding window for these archs
 * (Mistral is GGUF llama; Phi SWA is disabled there), so the windows here are wider than the text.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, type Model } from "../../src/api/model.ts";
import { testGpu } from "../helpers.ts";
import { writeFamilyGguf } from "../../bench/lib/random_family.ts";
import { familyModel } from "./fixtures.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const available = existsSync(join(root, "node_modules/node-llama-cpp")) && Deno.build.os === "linux" && Deno.build.arch === "x86_64";
const N = 32;

async function greedy(model: Model, prompt: number[]): Promise<number[]> {
  const ids: number[] = [];
  for await (const p of model.generateStream(prompt, { maxTokens: N, temperature: 0 })) ids.push(p.id);
  return ids;
}

function llamaCpp(models: string[], prompt: number[]): number[][] {
  const runs = models.map((model) => ({ model }));
  const r = spawnSync("node", ["tests/cli/llamacpp_greedy.mjs", JSON.stringify({ runs, prompt, n: N })], { cwd: root, encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, `llama.cpp run failed: ${r.stderr}`);
  return r.stdout.trim().split("\n").map((l) => JSON.parse(l).ids);
}

/** Windows wider than prompt + generated text (llama.cpp runs none for these GGUF archs). */
const WIDE = { slidingWindow: 4096 };
// qwen2 tied (seed 22: the fixture's seed falls into repeating one token) and untied.
const CASES: [string, Record<string, number | boolean>][] = [
  ["llama", {}], ["llama3", {}], ["mistral", WIDE], ["qwen2", { seed: 22 }], ["qwen2", { tied: false }], ["phi3", WIDE],
];

Deno.test({
  name: "families: llama.cpp loads each family's GGUF and its greedy ids equal ours for 32 tokens",
  ignore: !available,
  async fn() {
    const gpu = await testGpu();
    const models = await Promise.all(CASES.map(([name, over]) => familyModel(name, over)));
    const prompt = models[0].prompts[0];
    // Control: qwen2 with q/k rows permuted as llama's (the convention llama.cpp must not see for qwen2).
    const wrong = models[3].gguf.replace(/\.gguf$/, "-wrong-qk.gguf");
    await writeFamilyGguf(models[3].spec, wrong, { wrongQK: true });
    const theirs = llamaCpp([...models.map((m) => m.gguf), wrong], prompt);
    for (const [i, m] of models.entries()) {
      const model = await loadModel(m.gguf, { gpu });
      const ours = await greedy(model, prompt);
      model.close();
      const eos = 2;
      let k = 0;
      while (k < ours.length && ours[k] === theirs[i][k]) k++;
      const stoppedAtEos = ours.length < N && k === ours.length && theirs[i][k] === eos;
      assert.ok(k >= N || stoppedAtEos, `${m.spec.name}: llama.cpp agrees for ${k} tokens\n ours  ${ours.join(",")}\n llama ${theirs[i].join(",")}`);
      assert.ok(new Set(ours).size > 3, `${m.spec.name}: the greedy text is not a single repeated token (${ours.join(",")})`);
    }
    assert.notDeepEqual(theirs[models.length], theirs[3], "qwen2 with llama's q/k permutation runs differently in llama.cpp (the convention is seen)");
  },
});
