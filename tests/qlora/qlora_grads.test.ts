/**
 * QLoRA gradients: LoRA A/B gradients through the 4-bit base (dequantize-on-the-fly kernels) match
 * a reference that uses the same dequantized weights.
 *
 * The chain: (1) tests/model/lora_grads.test.ts proves the f32 GPU training pass against PyTorch
 * autograd (float64) to 1e-4; (2) here, the NF4 model's weights are dequantized on the CPU
 * (dequantize4bit, bit-identical to bitsandbytes and to what the kernels compute) into a plain f32
 * model, whose LoRA gradients are the reference; (3) the QLoRA pass (qmatmul / qmatmulBackward,
 * no f32 copy of W on the GPU) must give the same loss and gradients.
 */
import assert from "node:assert/strict";
import type { Gpu } from "../../src/gpu/gpu.ts";
import { LlamaGpu } from "../../src/model/llama.ts";
import { evalLoss, lossAndGrads } from "../../src/model/llama_train.ts";
import { dequantizeWeight, type QuantizeSpec } from "../../src/model/quantized.ts";
import { NO_HOOKS } from "../../src/model/sites.ts";
import { ggufWeights, type WeightSource } from "../../src/model/weights.ts";
import { STORIES, testGpu } from "../helpers.ts";
import { closedFormLora as makeLora, relativeGradErrors, shakespeareBatch as batch } from "./helpers.ts";

/** A weight source serving a quantized model's weights dequantized (the reference's f32 weights). */
function dequantizedSource(gpu: Gpu, q: LlamaGpu, base: WeightSource): WeightSource {
  return {
    ...base,
    readF32: async (name) => {
      const w = q.quantized.get(name);
      return w ? await dequantizeWeight(gpu, w) : await base.readF32(name);
    },
  };
}

const CASES: { label: string; spec: QuantizeSpec; dropout: number; checkpointing: boolean }[] = [
  { label: "nf4 double-quant", spec: { type: "nf4", blocksize: 64, doubleQuant: true, head: false }, dropout: 0, checkpointing: false },
  { label: "nf4 bs32 + 4-bit head, dropout 0.1, checkpointing", spec: { type: "nf4", blocksize: 32, doubleQuant: false, head: true }, dropout: 0.1, checkpointing: true },
  { label: "fp4 bs128 double-quant", spec: { type: "fp4", blocksize: 128, doubleQuant: true, head: false }, dropout: 0, checkpointing: false },
];

for (const c of CASES) {
  Deno.test(`QLoRA gradients (${c.label}) match the f32 pass on the same dequantized weights`, async () => {
    const gpu = await testGpu();
    const src = await ggufWeights(STORIES);
    const q = await LlamaGpu.load(gpu, src, { quantize: c.spec });
    const ref = await LlamaGpu.load(gpu, dequantizedSource(gpu, q, src));
    await src.close();
    try {
      assert.equal(q.quantized.size, 35 + (c.spec.head ? 1 : 0));
      assert.equal(ref.quantized.size, 0);
      // ffn_down has in = 172, not a multiple of the blocksize: its blocks straddle rows.
      assert.ok(172 % c.spec.blocksize !== 0);
      const b = await batch(2, 48);
      const lq = makeLora(gpu, q, 4, c.dropout), lr = makeLora(gpu, ref, 4, c.dropout);
      const o = { seed: 7, gradScale: 1 / b.count, checkpointing: c.checkpointing };
      const sum = async (t: ReturnType<typeof lossAndGrads>) => {
        const v = (await gpu.readF32(t)).reduce((a, x) => a + x, 0) / b.count;
        t.release();
        return v;
      };
      const lossQ = await sum(lossAndGrads(q, lq.hooks(), b, o));
      const lossR = await sum(lossAndGrads(ref, lr.hooks(), b, o));
      console.log(`  loss: qlora ${lossQ.toFixed(6)}, reference ${lossR.toFixed(6)}`);
      assert.ok(Math.abs(lossQ - lossR) <= 1e-5 * lossR, `loss ${lossQ} vs ${lossR}`);
      let worst = 0;
      for (const [name, rel] of await relativeGradErrors(gpu, lq, lr)) {
        assert.ok(rel <= 1e-4, `${name} grad: |err|/|grad| = ${rel}`);
        worst = Math.max(worst, rel);
      }
      console.log(`  worst relative gradient error ${worst.toExponential(2)} over ${lq.params.size} tensors`);
      const e = await sum(evalLoss(q, c.dropout ? NO_HOOKS : lq.hooks(), b));
      if (!c.dropout) assert.ok(Math.abs(e - lossQ) < 1e-5, "eval forward gives the training loss");
      // The base never moves and no f32 copy of a quantized weight exists on the GPU.
      for (const name of q.quantized.keys()) assert.ok(!q.weights.has(name));
      lq.release();
      lr.release();
    } finally {
      q.destroy();
      ref.destroy();
    }
  });
}
