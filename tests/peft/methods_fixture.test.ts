/**
 * DoRA, (IA)³, BitFit, LN tuning, prompt tuning, prefix tuning (with its projection) and a Houlsby
 * bottleneck adapter against an independent PyTorch implementation
 * (scripts/dev/make_methods_fixture.py, float64 autograd): directories written by that script in
 * PEFT's (AdapterHub's for the bottleneck) layout load here and give its logits (1e-4) and greedy
 * ids, and the whole-model loss and every gradient of a training batch match its autograd (1e-4
 * relative), q/k orders handled.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { loadModel } from "../../src/api/model.ts";
import { readSafetensors } from "../../src/io/safetensors.ts";
import { permuteQK } from "../../src/model/config.ts";
import { lossAndGrads } from "../../src/model/llama_train.ts";
import { STORIES, testGpu } from "../helpers.ts";
import { Adapter } from "../../src/peft/adapter.ts";
import type { LlamaConfig } from "../../src/model/config.ts";
import type { Model } from "../../src/api/model.ts";

/**
 * The projection's output rows that make the keys (rows of transform.2's weight and bias inside
 * each layer's key segment): PyTorch's are in HF order, ours in GGUF order.
 */
function keyRows(c: LlamaConfig, key: string, data: Float32Array, direction: "hf_to_gguf" | "gguf_to_hf"): Float32Array {
  if (!key.includes("transform.2")) return data;
  const kv = c.nKvHeads * c.headDim, W = c.nLayers * 2 * kv, cols = data.length / W, out = data.slice();
  for (let l = 0; l < c.nLayers; l++) {
    const off = 2 * l * kv * cols;
    out.set(permuteQK(data.subarray(off, off + kv * cols), kv, cols, c.headDim, direction), off);
  }
  return out;
}

/** The fixture's prefix-tuning adapter in its trained form (embedding + projection), from train_params.safetensors. */
async function projectionAdapter(m: Model, dir: string): Promise<Adapter> {
  const st = await readSafetensors(`${dir}/train_params.safetensors`);
  const values = new Map<string, Float32Array>();
  for (const k of st.tensors.keys()) values.set(k, keyRows(m.config, k, await st.readF32(k), "hf_to_gguf"));
  await st.close();
  const cfg = { peft_type: "PREFIX_TUNING", num_virtual_tokens: 6, prefix_projection: true, encoder_hidden_size: 24 };
  return m.peft.attach(Adapter.fromValues(m.llama.backend(), m.config, "prefix_trained", cfg, values));
}

const FIXTURES = new URL("../fixtures/methods/", import.meta.url).pathname;

for (const method of ["dora", "ia3", "bitfit", "ln_tuning", "prompt_tuning", "prefix_tuning", "houlsby"]) {
  Deno.test(`${method}: a PEFT-format adapter from PyTorch gives its logits, loss and gradients`, async () => {
    const dir = `${FIXTURES}${method}`;
    const fx = JSON.parse(await readFile(`${dir}/expected.json`, "utf8"));
    const m = await loadModel(STORIES, { gpu: await testGpu() });
    try {
      const a = await m.loadAdapter(method, dir);
      const logits = await m.logits(fx.prompt, { adapter: method });
      let worstLogit = 0;
      logits.forEach((row, t) => row.forEach((v, i) => worstLogit = Math.max(worstLogit, Math.abs(v - fx.logits[t][i]))));
      assert.ok(worstLogit < 1e-4, `${method}: max logit difference ${worstLogit}`);
      if (fx.greedy) {
        const ids: number[] = [];
        for await (const piece of m.generateStream(fx.prompt, { adapter: method, maxTokens: fx.greedy.length, temperature: 0 })) if (piece.id >= 0) ids.push(piece.id);
        assert.deepEqual(ids, fx.greedy, `${method}: greedy ids`);
      }
      // Prefix tuning saves the projected prefix; its gradients are the projection's (trained form).
      const t = method === "prefix_tuning" ? await projectionAdapter(m, dir) : a;

      const slots = t.trainable();
      const batch = { B: fx.inputs.length, T: fx.inputs[0].length, inputs: fx.inputs.flat(), targets: fx.targets.flat() };
      const count = batch.targets.filter((t: number) => t >= 0).length;
      const lossT = lossAndGrads(m.llama, t.hooks(), batch, { seed: 1, gradScale: 1 / count });
      const loss = (await m.gpu.readF32(lossT)).reduce((s, v) => s + v, 0) / count;
      lossT.release();
      assert.ok(Math.abs(loss - fx.loss) < 1e-4 * fx.loss, `${method}: loss ${loss} vs PyTorch ${fx.loss}`);

      const want = await readSafetensors(`${dir}/grads.safetensors`);
      let worst = 0;
      try {
        assert.equal(want.tensors.size, slots.length);
        for (const l of t.layout) {
          const s = slots.find((x) => x.key === l.key)!;
          let got = await m.gpu.readF32(s.grad);
          if (l.qkRows) got = permuteQK(got, l.shape[0], got.length / l.shape[0], m.config.headDim, "gguf_to_hf");
          if (l.reorder) got = l.reorder(got, "gguf_to_hf");
          if (method === "prefix_tuning") got = keyRows(m.config, l.key, got, "gguf_to_hf");
          const ref = await want.readF32(l.key);
          let err = 0, norm = 0;
          for (let i = 0; i < ref.length; i++) {
            err += (got[i] - ref[i]) ** 2;
            norm += ref[i] ** 2;
          }
          assert.ok(norm > 0, `${l.key}: zero reference gradient`);
          const rel = Math.sqrt(err / norm);
          assert.ok(rel <= 1e-4, `${method} ${l.key}: |err|/|grad| = ${rel}`);
          worst = Math.max(worst, rel);
        }
      } finally {
        await want.close();
      }
      console.log(`  ${method}: logits within ${worstLogit.toExponential(2)}, worst relative gradient error ${worst.toExponential(2)} over ${slots.length} tensors`);
    } finally {
      m.close();
    }
  });
}
