/**
 * Training on a GGUF base kept in a ggml block format (issue 13 part 3), as QLoRA trains on NF4:
 * the backward runs through the dequantizing kernels (dx = dy · dequant(W)) and the base never
 * moves.
 *   - LoRA gradients on a Q4_K / Q8_0 / Q6_K base equal those of the same LoRA on the same file
 *     expanded to f32 at load (the dequantized values in plain f32 matmuls) within 1e-5 relative,
 *     and so do the gradients of other methods ((IA)³ and prompt tuning in one hybrid adapter);
 *   - a LoRA fine-tune on the Q4_K base lowers the eval loss, and the memory planner (counting the
 *     Q4_K bytes as base_ggml) is within 10% of the measured peak.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../src/api/model.ts";
import { GGML } from "../../src/io/ggml_quants.ts";
import { evalLoss, lossAndGrads } from "../../src/model/llama_train.ts";
import { Adapter } from "../../src/peft/adapter.ts";
import { train } from "../../src/train/trainer.ts";
import { SHARED, testGpu } from "../helpers.ts";
import { closedFormLora, relativeGradErrors, shakespeareBatch } from "../qlora/helpers.ts";
import { quantizedStories } from "./helpers.ts";

const CASES = [
  { type: "Q4_K", dropout: 0.1, checkpointing: true },
  { type: "Q8_0", dropout: 0, checkpointing: false },
  { type: "Q6_K", dropout: 0, checkpointing: false },
] as const;

for (const c of CASES) {
  const label = `${c.type}${c.dropout ? `, dropout ${c.dropout}` : ""}${c.checkpointing ? ", checkpointing" : ""}`;
  Deno.test(`LoRA gradients on a ${label} base equal those on the same weights expanded to f32 (1e-5 relative)`, async () => {
    const gpu = await testGpu();
    const dir = await mkdtemp(join(tmpdir(), "ggml-grads-"));
    const path = await quantizedStories(GGML[c.type], dir);
    const q = await loadModel(path, { gpu });
    const ref = await loadModel(path, { gpu, dequantize: true });
    try {
      assert.deepEqual(Object.keys(q.parameterReport().ggmlTypes), [c.type]);
      assert.equal(q.parameterReport().f32Params, (2 * 5 + 1) * 256, "only the norms are f32");
      assert.equal(ref.parameterReport().ggmlParams, 0);
      const b = await shakespeareBatch(2, 48);
      const lq = closedFormLora(gpu, q.llama, 4, c.dropout), lr = closedFormLora(gpu, ref.llama, 4, c.dropout);
      const o = { seed: 7, gradScale: 1 / b.count, checkpointing: c.checkpointing };
      const mean = async (t: ReturnType<typeof lossAndGrads>) => {
        const v = (await gpu.readF32(t)).reduce((a, x) => a + x, 0) / b.count;
        t.release();
        return v;
      };
      const lossQ = await mean(lossAndGrads(q.llama, lq.hooks(), b, o));
      const lossR = await mean(lossAndGrads(ref.llama, lr.hooks(), b, o));
      assert.ok(Math.abs(lossQ - lossR) <= 1e-5 * lossR, `loss ${lossQ} vs ${lossR}`);
      let worst = 0;
      for (const [name, rel] of await relativeGradErrors(gpu, lq, lr)) {
        assert.ok(rel <= 1e-5, `${name} grad: |err|/|grad| = ${rel}`);
        worst = Math.max(worst, rel);
      }
      console.log(`  loss ${lossQ.toFixed(6)} (f32-expanded ${lossR.toFixed(6)}); worst relative gradient error ${worst.toExponential(2)} over ${lq.params.size} tensors`);
      if (!c.dropout) assert.ok(Math.abs(await mean(evalLoss(q.llama, lq.hooks(), b)) - lossQ) < 1e-5, "eval forward gives the training loss");
      lq.release();
      lr.release();
    } finally {
      q.close();
      ref.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
}

Deno.test("(IA)³ + prompt tuning (a hybrid adapter) on a Q4_K base: gradients equal those on the f32-expanded file", async () => {
  const gpu = await testGpu();
  const dir = await mkdtemp(join(tmpdir(), "ggml-methods-"));
  const path = await quantizedStories(GGML.Q4_K, dir);
  const q = await loadModel(path, { gpu });
  const ref = await loadModel(path, { gpu, dequantize: true });
  try {
    const config = {
      peft_type: "HYBRID",
      components: { ia3: { peft_type: "IA3" }, prompt: { peft_type: "PROMPT_TUNING", num_virtual_tokens: 4 } },
    };
    const [aq, ar] = [q, ref].map((m) => Adapter.create(m.llama.backend(), m.config, "h", config, 3));
    aq.trainable();
    ar.trainable();
    const b = await shakespeareBatch(2, 32);
    const o = { seed: 1, gradScale: 1 / b.count };
    lossAndGrads(q.llama, aq.hooks(), b, o).release();
    lossAndGrads(ref.llama, ar.hooks(), b, o).release();
    for (const [name, rel] of await relativeGradErrors(gpu, aq, ar)) assert.ok(rel <= 1e-5, `${name} grad: |err|/|grad| = ${rel}`);
    assert.ok(aq.params.size >= 3, "(IA)³ vectors and the prompt embeddings");
    aq.release();
    ar.release();
  } finally {
    q.close();
    ref.close();
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("LoRA fine-tune on a Q4_K base lowers eval loss; the planner counts the Q4_K bytes and is within 10% of the measured peak", async () => {
  const gpu = await testGpu();
  const dir = await mkdtemp(join(tmpdir(), "ggml-train-"));
  const path = await quantizedStories(GGML.Q4_K, dir);
  const m = await loadModel(path, { gpu });
  try {
    const f32 = await loadModel(path, { gpu, dequantize: true });
    const f32Bytes = f32.parameterReport().f32Bytes;
    f32.close();
    const p = m.parameterReport();
    assert.ok(p.ggmlBytes + p.f32Bytes < f32Bytes / 6, "the Q4_K base takes under a sixth of the f32 base's GPU bytes");
    m.addAdapter("a", { r: 8, lora_alpha: 16, target_modules: "all-linear" }, 1);
    const res = await train(m, {
      adapter: "a", data: `${SHARED}data/tinyshakespeare.txt`, seqLen: 32, batchSize: 4, maxSteps: 10, learningRate: 5e-3,
      evalFraction: 0.1, maxExamples: 200, maxEvalBatches: 1, seed: 5, progress: false,
    });
    console.log(`  Q4_K base: eval loss ${res.initialEvalLoss!.toFixed(4)} -> ${res.finalEvalLoss!.toFixed(4)}; GPU peak planned ${res.plan.total} / measured ${res.peakGpuBytes} bytes`);
    assert.ok(res.finalEvalLoss! < res.initialEvalLoss! * 0.9, `eval loss ${res.initialEvalLoss} -> ${res.finalEvalLoss}`);
    assert.equal(res.plan.classes.base_ggml, p.ggmlBytes, "the plan counts the kept-quantized bytes");
    assert.equal(res.plan.classes.base_f32, p.f32Bytes);
    const ratio = res.plan.total / res.peakGpuBytes;
    assert.ok(Math.abs(ratio - 1) <= 0.1, `planned ${res.plan.total} vs measured peak ${res.peakGpuBytes}`);
  } finally {
    m.close();
    await rm(dir, { recursive: true, force: true });
  }
});
