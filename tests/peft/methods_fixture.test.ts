/**
 * DoRA, (IA)³, BitFit and LN tuning against an independent PyTorch implementation
 * (scripts/dev/make_methods_fixture.py, float64 autograd): PEFT-format directories written by that
 * script load here and give its logits (1e-4), and the whole-model loss and every gradient of a
 * training batch match its autograd (1e-4 relative), q/k orders handled.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { loadModel } from "../../src/api/model.ts";
import { readSafetensors } from "../../src/io/safetensors.ts";
import { permuteQK } from "../../src/model/config.ts";
import { lossAndGrads } from "../../src/model/llama_train.ts";
import { STORIES, testGpu } from "../helpers.ts";

const FIXTURES = new URL("../fixtures/methods/", import.meta.url).pathname;

for (const method of ["dora", "ia3", "bitfit", "ln_tuning"]) {
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

      const slots = a.trainable();
      const batch = { B: fx.inputs.length, T: fx.inputs[0].length, inputs: fx.inputs.flat(), targets: fx.targets.flat() };
      const count = batch.targets.filter((t: number) => t >= 0).length;
      const lossT = lossAndGrads(m.llama, a.hooks(), batch, { seed: 1, gradScale: 1 / count });
      const loss = (await m.gpu.readF32(lossT)).reduce((s, v) => s + v, 0) / count;
      lossT.release();
      assert.ok(Math.abs(loss - fx.loss) < 1e-4 * fx.loss, `${method}: loss ${loss} vs PyTorch ${fx.loss}`);

      const want = await readSafetensors(`${dir}/grads.safetensors`);
      let worst = 0;
      try {
        assert.equal(want.tensors.size, slots.length);
        for (const l of a.layout) {
          const s = slots.find((x) => x.key === l.key)!;
          let got = await m.gpu.readF32(s.grad);
          if (l.qkRows) got = permuteQK(got, l.shape[0], got.length / l.shape[0], m.config.headDim, "gguf_to_hf");
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
