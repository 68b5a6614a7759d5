/**
 * Issue #4 part 4: loadModel(path, {quantize}) quantizes the block linears while loading.
 * stories260K in NF4 (double quant) keeps the f32 model's first greedy sentence and its perplexity
 * on the first 64 KB of tinyshakespeare within 10%; the ~25M-parameter config's 4-bit linears cost
 * <= 4.13 bits a parameter in our allocator's GPU buffers.
 */
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import { evalLoss } from "../../src/model/llama_train.ts";
import { NO_HOOKS } from "../../src/model/sites.ts";
import { loadModel, type Model } from "../../src/api/model.ts";
import { isQuantized } from "../../src/model/quantized.ts";
import { SHARED, STORIES, testGpu } from "../helpers.ts";
import { randomLlamaGguf } from "./helpers.ts";

/** Mean next-token loss of `ids` in non-overlapping windows of T (batched B at a time). */
async function perplexity(m: Model, ids: number[], T = 128, B = 64): Promise<number> {
  let sum = 0, count = 0;
  const windows = Math.floor((ids.length - 1) / T);
  for (let w0 = 0; w0 < windows; w0 += B) {
    const b = Math.min(B, windows - w0);
    const inputs: number[] = [], targets: number[] = [];
    for (let i = 0; i < b; i++) {
      const s = (w0 + i) * T;
      inputs.push(...ids.slice(s, s + T));
      targets.push(...ids.slice(s + 1, s + T + 1));
    }
    const t = evalLoss(m.llama, NO_HOOKS, { B: b, T, inputs, targets });
    for (const v of await m.gpu.readF32(t)) sum += v;
    t.release();
    count += b * T;
  }
  return Math.exp(sum / count);
}

const FIRST = "Once upon a time, there was a little girl named Lily.";

Deno.test("NF4 stories260K: same first sentence, perplexity within 10% of f32, logits close", async () => {
  const gpu = await testGpu();
  const text = (await readFile(`${SHARED}data/tinyshakespeare.txt`, "utf8")).slice(0, 65536);
  const f32 = await loadModel(STORIES, { gpu });
  const nf4 = await loadModel(STORIES, { gpu, quantize: "nf4", doubleQuant: true });
  try {
    assert.ok(nf4.isQuantized && !f32.isQuantized);
    assert.equal(nf4.llama.quantized.size, 5 * 7, "every block linear is 4-bit");
    assert.ok(!nf4.llama.quantized.has("token_embd.weight") && nf4.llama.weights.has("blk.0.attn_norm.weight"), "embeddings and norms stay f32");
    const gF = await f32.complete("", { maxTokens: 40, temperature: 0 });
    const gQ = await nf4.complete("", { maxTokens: 40, temperature: 0 });
    console.log(`  f32: ${JSON.stringify(gF)}\n  nf4: ${JSON.stringify(gQ)}`);
    assert.ok(gF.startsWith(FIRST), `f32 model: ${gF}`);
    assert.ok(gQ.startsWith(FIRST), `NF4 model keeps the first sentence: ${gQ}`);

    const ids = f32.tokenizer.encode(text, { addSpecial: false });
    const pF = await perplexity(f32, ids), pQ = await perplexity(nf4, ids);
    console.log(`  perplexity on ${ids.length} tokens (64 KB tinyshakespeare): f32 ${pF.toFixed(3)}, nf4 ${pQ.toFixed(3)} (${(100 * (pQ / pF - 1)).toFixed(2)}%)`);
    assert.ok(Math.abs(pQ / pF - 1) <= 0.10, `perplexity ${pQ} vs ${pF}`);

    const prompt = f32.encodePrompt("Once upon a time, there was a little dog");
    const lF = await f32.logits(prompt), lQ = await nf4.logits(prompt);
    let max = 0, sum = 0, n = 0;
    for (let t = 0; t < lF.length; t++) {
      for (let i = 0; i < lF[t].length; i++) {
        const d = Math.abs(lF[t][i] - lQ[t][i]);
        max = Math.max(max, d);
        sum += d;
        n++;
      }
    }
    console.log(`  logits over ${lF.length} positions: max |diff| ${max.toFixed(4)}, mean |diff| ${(sum / n).toFixed(4)}`);
    assert.ok(max > 0, "quantization changes the logits");
    assert.ok(sum / n < 1, `mean |logit diff| ${sum / n}`);

    const r = nf4.memoryReport(), pr = nf4.parameterReport();
    assert.equal(r.base_4bit, pr.quantizedBytes);
    assert.equal(pr.quantizedParams, 5 * (64 * 64 * 2 + 32 * 64 * 2 + 172 * 64 * 3));
    assert.ok(r.base_4bit < f32.memoryReport().base_f32 / 5, "4-bit linears are much smaller");
  } finally {
    f32.close();
    nf4.close();
  }
});

Deno.test("quantized loading: the ~25M config's double-quantized linears cost <= 4.13 bits/param on the GPU", async () => {
  const gpu = await testGpu();
  const path = await randomLlamaGguf({ dim: 512, nLayers: 8, hiddenDim: 1376, nHeads: 8, nKvHeads: 8, vocabSize: 512, seed: 3 });
  try {
    const before = gpu.memoryByCategory().weights ?? 0;
    const m = await loadModel(path, { gpu, quantize: "nf4", doubleQuant: true });
    const held = (gpu.memoryByCategory().weights ?? 0) - before;
    const p = m.parameterReport();
    const bits = (p.quantizedBytes * 8) / p.quantizedParams;
    console.log(`  ${p.quantizedParams} quantized params: ${p.quantizedBytes} bytes = ${bits.toFixed(4)} bits/param; f32 rest ${p.f32Bytes} bytes; weights held ${held}`);
    assert.equal(held, p.quantizedBytes + p.f16Bytes + p.f32Bytes, "the report adds up to the allocator's weight bytes");
    assert.equal(p.quantizedParams, 8 * (4 * 512 * 512 + 3 * 512 * 1376));
    assert.ok(bits <= 4.13, `${bits} bits/param`);
    for (const w of m.llama.quantized.values()) assert.ok(isQuantized(w));
    // Without double quant: f32 absmax per 64 values = 4.5 bits.
    m.close();
    const m2 = await loadModel(path, { gpu, quantize: "nf4" });
    const b2 = m2.parameterReport().quantizedBitsPerParam;
    console.log(`  without double quant: ${b2.toFixed(4)} bits/param`);
    assert.ok(b2 > 4.49 && b2 < 4.52);
    m2.close();
  } finally {
    await rm(path, { force: true });
  }
});

Deno.test("quantized loading: bad options are refused with clear messages", async () => {
  const gpu = await testGpu();
  await assert.rejects(loadModel(STORIES, { gpu, quantize: "int4" as "nf4" }), /quantize must be "nf4" or "fp4"/);
  await assert.rejects(loadModel(STORIES, { gpu, doubleQuant: true }), /need quantize/);
  await assert.rejects(loadModel(STORIES, { gpu, quantize: "nf4", blocksize: 48 }), /blocksize 48 must be a power of two/);
});
