/**
 * Several adapters at once: weighted per-call combinations (stacked hooks) and PEFT's
 * add_weighted_adapter ("cat" exact, "linear" PEFT's formula, "svd" the truncated SVD).
 */
import assert from "node:assert/strict";
import { loadModel, type Model } from "../../src/api/model.ts";
import { PeftError } from "../../src/errors.ts";
import { loraKeys } from "../../src/peft/lora/method.ts";
import { loraBs, randn, STORIES, testGpu } from "../helpers.ts";

async function twoLoras(): Promise<Model> {
  const m = await loadModel(STORIES, { gpu: await testGpu() });
  const a = m.addAdapter("a", { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"] }, 1);
  const b = m.addAdapter("b", { r: 2, lora_alpha: 8, target_modules: ["v_proj", "down_proj"], use_rslora: true }, 2);
  for (const B of [...loraBs(a), ...loraBs(b)]) m.gpu.write(B, randn(B.size, B.size + 3, 0.08));
  return m;
}

const flat = (x: Float32Array[]) => x.flatMap((r) => [...r]);
const maxDiff = (x: number[], y: number[]) => Math.max(...x.map((v, i) => Math.abs(v - y[i])));

Deno.test("combine: weighted adapters per call and setAdapters; cat of two LoRAs equals running both (1e-5)", async () => {
  const m = await twoLoras();
  try {
    const ids = m.encodePrompt("Once upon a time, in a small town,");
    const w = [{ name: "a", weight: 0.7 }, { name: "b", weight: -0.4 }];
    const both = flat(await m.logits(ids, { adapters: w }));
    const base = flat(await m.logits(ids));
    assert.ok(maxDiff(both, base) > 0.05, "the combination changes the logits");
    m.setAdapters(w);
    assert.deepEqual(flat(await m.logits(ids)), both, "setAdapters is the default of later calls");
    m.setAdapters([]);
    assert.deepEqual(flat(await m.logits(ids)), base);
    await m.addWeightedAdapter(["a", "b"], [0.7, -0.4], "cat", { combinationType: "cat" });
    assert.equal(m.adapter("cat").config.r, 6);
    assert.equal(m.adapter("cat").config.lora_alpha, 6);
    assert.deepEqual(m.adapter("cat").config.target_modules, ["q_proj", "v_proj", "down_proj"]);
    const cat = flat(await m.logits(ids, { adapter: "cat" }));
    const d = maxDiff(cat, both);
    console.log(`  cat vs both at once: ${d.toExponential(2)}`);
    assert.ok(d < 1e-5 * Math.max(...both.map(Math.abs)), `cat differs by ${d}`);
    // Same text from a script and from generate with per-call weights.
    const t1 = await m.complete("Once upon a time", { adapters: w, maxTokens: 12, temperature: 0 });
    const t2 = await m.complete("Once upon a time", { adapter: "cat", maxTokens: 12, temperature: 0 });
    assert.equal(t1, t2);
  } finally {
    m.close();
  }
});

Deno.test("combine: linear follows PEFT's formula; svd at full rank is exact and truncation keeps the top directions", async () => {
  const m = await twoLoras();
  try {
    const a2 = m.addAdapter("a2", { r: 4, lora_alpha: 4, target_modules: ["q_proj", "v_proj"] }, 9);
    for (const B of loraBs(a2)) m.gpu.write(B, randn(B.size, B.size + 7, 0.08));
    await m.addWeightedAdapter(["a", "a2"], [0.5, 2], "lin", { combinationType: "linear" });
    const k = loraKeys({ layer: 1, module: "v_proj" });
    const read = async (n: string, key: string) => await m.gpu.readF32(m.adapter(n).params.get(key)!.value);
    const sa = 0.5 * 2, sb = 2 * 1; // weight · scaling (alpha/r = 2 and 1)
    const aA = await read("a", k.A), a2A = await read("a2", k.A);
    const wantA = aA.map((v, i) => Math.sqrt(sa) * v + Math.sqrt(sb) * a2A[i]);
    const gotA = await read("lin", k.A);
    assert.ok(maxDiff([...gotA], [...wantA]) < 1e-6, "linear: A = Σ √(w·s)·A");

    const ids = m.encodePrompt("The dog ran to the");
    const base = flat(await m.logits(ids));
    // rank 6 = Σr: the SVD reproduces Σ (w·s)·(s·B·A) exactly (PEFT's scaling appears twice).
    await m.addWeightedAdapter(["a", "b"], [1, 1], "svd6", { combinationType: "svd", svdRank: 6 });
    const sA = 8 / 4, sB = 8 / Math.sqrt(2);
    await m.addWeightedAdapter(["a", "b"], [sA, sB], "cat_sq", { combinationType: "cat" }); // Σ (s·w)·B·A with w = s
    const svd6 = flat(await m.logits(ids, { adapter: "svd6" })), catSq = flat(await m.logits(ids, { adapter: "cat_sq" }));
    assert.ok(maxDiff(svd6, catSq) < 1e-4, `svd at full rank vs exact: ${maxDiff(svd6, catSq)}`);
    await m.addWeightedAdapter(["a", "b"], [1, 1], "svd2", { combinationType: "svd", svdRank: 2 });
    const svd2 = flat(await m.logits(ids, { adapter: "svd2" }));
    assert.ok(maxDiff(svd2, catSq) < maxDiff(base, catSq), "a rank-2 approximation is closer than nothing");
    await assert.rejects(m.addWeightedAdapter(["a", "b"], [1, 1], "bad", { combinationType: "linear" }), (e: unknown) => e instanceof PeftError && /one rank/.test(e.message));
    m.addAdapter("i", { peft_type: "IA3" });
    await assert.rejects(m.addWeightedAdapter(["a", "i"], [1, 1], "bad2", { combinationType: "cat" }), (e: unknown) => e instanceof PeftError && /plain LoRA/.test(e.message));
  } finally {
    m.close();
  }
});
