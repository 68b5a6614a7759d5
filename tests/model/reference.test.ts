import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { ggufWeights } from "../../src/model/weights.ts";
import { llamaReferenceLogits } from "../../src/model/llama_reference.ts";
import { STORIES } from "../helpers.ts";

export interface LogitsFixture { cases: { ids: number[]; logits: number[][] }[] }
export async function loadLogitsFixture(): Promise<LogitsFixture> {
  return JSON.parse(await readFile(new URL("../fixtures/stories260K_logits.json", import.meta.url), "utf8"));
}

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
