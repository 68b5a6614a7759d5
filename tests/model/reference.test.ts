import assert from "node:assert/strict";
import { ggufWeights } from "../../src/model/weights.ts";
import { llamaReferenceLogits } from "../../src/model/llama_reference.ts";
import { STORIES } from "../helpers.ts";
import { loadLogitsFixture } from "./fixtures.ts";

Deno.test("CPU reference llama matches PyTorch (HF layout) logits within 1e-4", async () => {
  const src = await ggufWeights(STORIES);
  const w = new Map<string, Float32Array>();
  for (const n of src.names()) w.set(n, await src.readF32(n));
  const fx = await loadLogitsFixture();
  for (const c of fx.cases.slice(0, 3)) {
    const got = llamaReferenceLogits(src.config, w, c.ids);
    let max = 0;
    got.forEach((row, t) => row.forEach((v, i) => max = Math.max(max, Math.abs(v - c.logits[t][i]))));
    assert.ok(max < 1e-4, `max abs logit diff ${max}`);
  }
  await src.close();
});
