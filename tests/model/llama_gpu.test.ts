import assert from "node:assert/strict";
import { LlamaGpu } from "../../src/model/llama.ts";
import { ggufWeights } from "../../src/model/weights.ts";
import { argmax } from "../../src/infer/sampler.ts";
import { STORIES, testGpu } from "../helpers.ts";
import { loadLogitsFixture } from "./fixtures.ts";

async function loadStories() {
  const gpu = await testGpu();
  const src = await ggufWeights(STORIES);
  const llama = await LlamaGpu.load(gpu, src);
  await src.close();
  return llama;
}

Deno.test("GPU llama prefill logits match the PyTorch reference within 1e-4", async () => {
  const llama = await loadStories();
  const fx = await loadLogitsFixture();
  const V = llama.config.vocabSize;
  for (const c of fx.cases) {
    const t = llama.forward(c.ids, 0, { allLogits: true });
    const got = await llama.gpu.readF32(t);
    t.release();
    let max = 0;
    c.logits.forEach((row, i) => row.forEach((v, j) => max = Math.max(max, Math.abs(got[i * V + j] - v))));
    assert.ok(max < 1e-4, `prompt of ${c.ids.length} tokens: max abs logit diff ${max}`);
  }
  llama.destroy();
});

Deno.test("GPU llama decode from the KV cache equals prefill logits", async () => {
  const llama = await loadStories();
  const fx = await loadLogitsFixture();
  const c = fx.cases[3]; // 61 tokens
  const split = 7;
  const first = llama.forward(c.ids.slice(0, split), 0);
  (await llama.gpu.readF32(first)); first.release();
  let max = 0;
  for (let p = split; p < c.ids.length; p++) {
    const t = llama.forward([c.ids[p]], p);
    const got = await llama.gpu.readF32(t);
    t.release();
    c.logits[p].forEach((v, j) => max = Math.max(max, Math.abs(got[j] - v)));
  }
  assert.ok(max < 1e-4, `decode max abs logit diff ${max}`);
  llama.destroy();
});

Deno.test("greedy decoding from <s> yields the model card's first 20 ids", async () => {
  const llama = await loadStories();
  const expected = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337];
  const ids: number[] = [];
  let input = [1], pos = 0;
  for (let i = 0; i < 20; i++) {
    const t = llama.forward(input, pos);
    const logits = await llama.gpu.readF32(t);
    t.release();
    pos += input.length;
    const id = argmax(logits);
    ids.push(id);
    input = [id];
  }
  assert.deepEqual(ids, expected);
  llama.destroy();
});

Deno.test("forward rejects out-of-vocabulary ids and context overflow", async () => {
  const llama = await loadStories();
  assert.throws(() => llama.forward([1, 9999], 0), /outside the vocabulary/);
  assert.throws(() => llama.forward([1], llama.config.contextLength), /exceeds the model's context length/);
  llama.destroy();
});
