/**
 * The fused bottleneck-adapter kernel (inference) against its f64 CPU reference on awkward shapes
 * and every activation, and against the unfused graph ops training runs (same loss).
 */
import assert from "node:assert/strict";
import { loadModel } from "../../src/api/model.ts";
import { ACTIVATIONS } from "../../src/kernels/activation.ts";
import { BOTTLENECK_MAX_D, bottleneckForward, bottleneckForwardReference } from "../../src/kernels/bottleneck.ts";
import { evalLoss, lossAndGrads } from "../../src/model/llama_train.ts";
import { PeftError } from "../../src/errors.ts";
import { assertClose, randn, STORIES, testGpu } from "../helpers.ts";

Deno.test("bottleneck kernel equals its CPU reference (awkward N, D, d; every activation; r separate or the input itself; with the stream added, separate or aliasing the input)", async () => {
  const gpu = await testGpu();
  let seed = 1;
  for (const [N, D, d] of [[1, 1, 1], [3, 17, 5], [17, 64, 4], [2, 130, 65], [1, 33, BOTTLENECK_MAX_D]]) {
    for (const fn of ACTIVATIONS) {
      for (const [sameR, stream] of [[false, "none"], [true, "none"], [false, "separate"], [true, "z"]] as const) {
        const zh = randn(N * D, seed++), rh = sameR ? zh : randn(N * D, seed++);
        const sh = stream === "separate" ? randn(N * D, seed++) : stream === "z" ? zh : undefined;
        const wh = { wd: randn(d * D, seed++, 0.3), bd: randn(d, seed++, 0.3), wu: randn(D * d, seed++, 0.3), bu: randn(D, seed++, 0.3) };
        const up = (a: Float32Array, shape: number[]) => gpu.upload(a, shape, "f32", "activations");
        const z = up(zh, [N, D]), r = sameR ? z : up(rh, [N, D]);
        const st = stream === "separate" ? up(sh!, [N, D]) : stream === "z" ? z : undefined;
        const w = { wd: up(wh.wd, [d, D]), bd: up(wh.bd, [d]), wu: up(wh.wu, [D, d]), bu: up(wh.bu, [D]) };
        const o = { N, D, d, fn, scale: 1.7 };
        const out = bottleneckForward(gpu, z, r, w, o, st);
        assertClose(await gpu.readF32(out), bottleneckForwardReference(zh, rh, wh, o, sh), 2e-5, 2e-5, `N=${N} D=${D} d=${d} ${fn}${sameR ? " r=z" : ""} stream ${stream}`);
        for (const t of new Set([z, r, out, ...(st ? [st] : []), ...Object.values(w)])) t.release();
      }
    }
  }
  const t = gpu.tensor([4]);
  assert.throws(() => bottleneckForward(gpu, t, t, { wd: t, bd: t, wu: t, bu: t }, { N: 1, D: 4, d: BOTTLENECK_MAX_D + 1, fn: "relu", scale: 1 }), (e) => e instanceof PeftError && e.code === "KERNEL_ARGS");
  t.release();
});

Deno.test("bottleneck adapters: the fused inference path gives the loss of the graph ops training runs", async () => {
  const m = await loadModel(STORIES, { gpu: await testGpu() });
  try {
    const batch = { B: 2, T: 8, inputs: Array.from({ length: 16 }, (_, i) => (i * 29 + 3) % 512), targets: Array.from({ length: 16 }, (_, i) => (i * 41 + 7) % 512) };
    for (const [name, cfg] of [
      ["seq_bn", { peft_type: "BOTTLENECK", config: "seq_bn", init_weights: "bert", non_linearity: "relu" }],
      ["double_seq_bn", { peft_type: "BOTTLENECK", config: "double_seq_bn", init_weights: "bert" }],
      ["par_bn", { peft_type: "BOTTLENECK", config: "par_bn", init_weights: "bert", non_linearity: "gelu_new" }],
    ] as const) {
      const a = m.addAdapter(name, cfg, 4);
      // The up-projections away from zero: every term of the module counts.
      for (const [k, p] of a.params) if (k.includes("adapter_up")) m.gpu.write(p.value, randn(p.value.size, k.length, 0.3));
      a.trainable();
      const read = async (t: ReturnType<typeof evalLoss>) => {
        const v = (await m.gpu.readF32(t)).reduce((s, x) => s + x, 0);
        t.release();
        return v;
      };
      const fused = await read(evalLoss(m.llama, a.hooks(), batch));
      const graph = await read(lossAndGrads(m.llama, a.hooks(), batch, { seed: 1, gradScale: 1 }));
      assert.ok(Math.abs(fused - graph) < 1e-5 * Math.abs(graph), `${name}: fused ${fused} vs graph ops ${graph}`);
      m.deleteAdapter(name);
    }
  } finally {
    m.close();
  }
});
