/**
 * Merging a LoRA trained on a 4-bit base: dequantize + add (f32, exact: same outputs as the
 * unmerged adapter), unmerge (the original 4-bit weights come back), re-quantize (warned: outputs
 * change a little), and GGUF export of the merged model (reloads to the same outputs).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type Model } from "../../src/api/model.ts";
import { isQuantized } from "../../src/model/quantized.ts";
import { loraBs, randn, STORIES, testGpu } from "../helpers.ts";

function diff(a: Float32Array[], b: Float32Array[]) {
  let max = 0, sum = 0, n = 0;
  for (let t = 0; t < a.length; t++) {
    for (let i = 0; i < a[t].length; i++) {
      const d = Math.abs(a[t][i] - b[t][i]);
      max = Math.max(max, d);
      sum += d;
      n++;
    }
  }
  return { max, mean: sum / n };
}

async function withAdapter(gpu: Awaited<ReturnType<typeof testGpu>>): Promise<Model> {
  const m = await loadModel(STORIES, { gpu, quantize: "nf4", doubleQuant: true });
  const a = m.addAdapter("a", { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj", "down_proj"] }, 3);
  let k = 0;
  for (const B of loraBs(a)) m.gpu.write(B, randn(B.size, 100 + k++, 0.05)); // as if trained
  return m;
}

Deno.test("QLoRA merge: dequantize+add keeps the adapter's outputs; unmerge restores the 4-bit base; re-quantize warns; export reloads", async () => {
  const gpu = await testGpu();
  const m = await withAdapter(gpu);
  const dir = await mkdtemp(join(tmpdir(), "qlora-merge-"));
  try {
    const ids = m.encodePrompt("Once upon a time, there was a little dog");
    const base = await m.logits(ids);
    const withA = await m.logits(ids, { adapter: "a" });
    const d0 = diff(base, withA);
    assert.ok(d0.mean > 1e-3, "the adapter changes the outputs");

    await m.merge("a");
    assert.equal(m.llama.quantized.size, 35 - 15, "the 15 targeted weights are f32 after an exact merge");
    assert.ok(!isQuantized(m.llama.lw("blk.0.attn_q.weight")) && isQuantized(m.llama.lw("blk.0.attn_k.weight")));
    const merged = await m.logits(ids);
    const d1 = diff(merged, withA);
    console.log(`  merged (f32) vs unmerged adapter: max |logit diff| ${d1.max.toExponential(2)}`);
    assert.ok(d1.max < 1e-3, `merged logits differ by ${d1.max}`);

    await m.unmerge("a");
    assert.equal(m.llama.quantized.size, 35);
    assert.deepEqual(await m.logits(ids), base, "unmerge restores the exact 4-bit base");

    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (s: string) => warnings.push(s);
    try {
      await m.mergeAndUnload("a", { requantize: true });
    } finally {
      console.warn = warn;
    }
    assert.ok(warnings.some((w) => /re-quantizing .* outputs differ/.test(w)), "re-quantizing warns");
    assert.equal(m.llama.quantized.size, 35, "re-quantized weights are 4-bit again");
    assert.equal(m.adapters.size, 0);
    const requant = await m.logits(ids);
    const d2 = diff(requant, withA);
    console.log(`  re-quantized merge vs unmerged adapter: max ${d2.max.toFixed(4)}, mean ${d2.mean.toFixed(4)} (adapter effect: mean ${d0.mean.toFixed(4)})`);
    assert.ok(d2.max > 0 && d2.mean < d0.mean, "re-quantizing changes outputs a little, less than the adapter does");

    const path = join(dir, "merged.gguf");
    await m.save(path);
    const back = await loadModel(path, { gpu });
    const d3 = diff(await back.logits(ids), requant);
    back.close();
    console.log(`  exported GGUF (dequantized f32) reloads with max |logit diff| ${d3.max.toExponential(2)}`);
    assert.ok(d3.max < 1e-4);
  } finally {
    m.close();
    await rm(dir, { recursive: true, force: true });
  }
});
