/**
 * Whole-model LoRA gradients on stories260K (all seven linears of every block, A and B non-zero)
 * against PyTorch autograd in float64 (scripts/dev/make_lora_grad_fixture.py).
 */
import assert from "node:assert/strict";
import { LlamaGpu } from "../../src/model/llama.ts";
import { evalLoss, lossAndGrads } from "../../src/model/llama_train.ts";
import { Adapter } from "../../src/peft/adapter.ts";
import { loraKeys } from "../../src/peft/lora/method.ts";
import { GGUF_TO_HF_MODULE } from "../../src/model/config.ts";
import { ggufWeights } from "../../src/model/weights.ts";
import { STORIES, testGpu } from "../helpers.ts";
import { loadLoraGradFixture } from "./fixtures.ts";

const MODULE_ORDER = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

function formula(n: number, layer: number, m: number, kind: "A" | "B"): Float32Array {
  return Float32Array.from({ length: n }, (_, i) =>
    kind === "A" ? 0.05 * Math.sin(0.7 * i + 1.3 * layer + 0.31 * m) : 0.05 * Math.cos(0.5 * i + 0.9 * layer + 0.17 * m));
}

async function setup() {
  const gpu = await testGpu();
  const src = await ggufWeights(STORIES);
  const llama = await LlamaGpu.load(gpu, src);
  await src.close();
  const fx = await loadLoraGradFixture();
  const lora = Adapter.create(llama.backend(), llama.config, "grads", { r: fx.r, lora_alpha: fx.lora_alpha, target_modules: "all-linear" });
  for (let l = 0; l < llama.config.nLayers; l++) {
    MODULE_ORDER.forEach((mod, m) => {
      const [out, inn] = llama.w(`blk.${l}.${mod}.weight`).shape;
      const k = loraKeys({ layer: l, module: GGUF_TO_HF_MODULE[mod] });
      gpu.write(lora.params.get(k.A)!.value, formula(fx.r * inn, l, m, "A"));
      gpu.write(lora.params.get(k.B)!.value, formula(out * fx.r, l, m, "B"));
    });
  }
  lora.trainable();
  const B = fx.inputs.length, T = fx.inputs[0].length;
  const batch = { B, T, inputs: fx.inputs.flat(), targets: fx.targets.flat() };
  const count = batch.targets.filter((t) => t >= 0).length;
  return { gpu, llama, lora, fx, batch, count };
}

for (const checkpointing of [false, true]) {
  Deno.test(`LoRA gradients of the whole model match PyTorch autograd (checkpointing ${checkpointing})`, async () => {
    const { gpu, llama, lora, fx, batch, count } = await setup();
    const lossT = lossAndGrads(llama, lora.hooks(), batch, { seed: 1, gradScale: 1 / count, checkpointing });
    const losses = await gpu.readF32(lossT);
    lossT.release();
    const loss = losses.reduce((a, b) => a + b, 0) / count;
    assert.ok(Math.abs(loss - fx.loss) < 1e-4 * fx.loss, `loss ${loss} vs PyTorch ${fx.loss}`);
    let worst = 0;
    for (const g of fx.grads) {
      const k = loraKeys({ layer: g.layer, module: GGUF_TO_HF_MODULE[g.module] });
      const got = await gpu.readF32(lora.params.get(g.part === "A" ? k.A : k.B)!.grad!);
      let err = 0, norm = 0;
      for (let i = 0; i < got.length; i++) {
        err += (got[i] - g.data[i]) ** 2;
        norm += g.data[i] ** 2;
      }
      const rel = Math.sqrt(err) / Math.sqrt(norm);
      assert.ok(norm > 0, `PyTorch gradient of ${g.module}.${g.part} in layer ${g.layer} is zero`);
      assert.ok(rel <= 1e-4, `layer ${g.layer} ${g.module} ${g.part}: |err|/|grad| = ${rel}`);
      worst = Math.max(worst, rel);
    }
    console.log(`  worst relative gradient error ${worst.toExponential(2)} over ${fx.grads.length} tensors`);
    const evalT = evalLoss(llama, lora.hooks(), batch);
    const evalLosses = await gpu.readF32(evalT);
    evalT.release();
    assert.ok(Math.abs(evalLosses.reduce((a, b) => a + b, 0) / count - loss) < 1e-5, "eval forward gives the training loss");
    lora.release();
    llama.destroy();
  });
}
