import assert from "node:assert/strict";
import { sampleOnGpu, sampleReference, sampleScoresReference } from "../../src/kernels/sample.ts";
import { randn, testGpu } from "../helpers.ts";

Deno.test("GPU greedy sampling is argmax with the lowest index on ties, on awkward vocab sizes", async () => {
  const gpu = await testGpu();
  for (const V of [1, 3, 17, 512, 4097]) {
    const logits = randn(V, V);
    if (V > 10) {
      logits[V - 2] = 9;
      logits[5] = 9; // tie: the lower index wins
    }
    const l = gpu.upload(logits, [V]);
    const next = gpu.zeros([1], "u32"), out = gpu.zeros([4], "u32");
    sampleOnGpu(gpu, l, next, out, { V, slot: 2, temperature: 0, seed: 1, step: 0 });
    const ids = await gpu.read(out) as Uint32Array;
    const expected = sampleReference(logits, { V, temperature: 0, seed: 1, step: 0 });
    assert.equal(ids[2], expected, `V=${V}`);
    assert.equal((await gpu.read(next))[0], expected);
    for (const t of [l, next, out]) t.release();
  }
});

Deno.test("GPU temperature sampling picks the reference's Gumbel-max winner and follows softmax(logits/T)", async () => {
  const gpu = await testGpu();
  const V = 300;
  const logits = randn(V, 3, 2);
  const l = gpu.upload(logits, [V]);
  const next = gpu.zeros([1], "u32"), out = gpu.zeros([64], "u32");
  for (let s = 0; s < 64; s++) sampleOnGpu(gpu, l, next, out, { V, slot: s, temperature: 0.7, seed: 9, step: s });
  const ids = await gpu.read(out) as Uint32Array;
  for (let s = 0; s < 64; s++) {
    const scores = sampleScoresReference(logits, { V, temperature: 0.7, seed: 9, step: s });
    const best = Math.max(...scores);
    // f32 on the GPU vs f64 here: the pick must be the winner or a near-tie of it.
    assert.ok(best - scores[ids[s]] <= 1e-4, `step ${s}: picked ${ids[s]} scores ${scores[ids[s]]} < best ${best}`);
  }
  for (const t of [l, next, out]) t.release();

  // Frequencies over many draws match softmax(logits / T).
  const small = new Float32Array([0, 1, 2, 0.5]);
  const T = 1.3, N = 4000;
  const ls = gpu.upload(small, [4]);
  const n2 = gpu.zeros([1], "u32"), o2 = gpu.zeros([N], "u32");
  for (let s = 0; s < N; s++) sampleOnGpu(gpu, ls, n2, o2, { V: 4, slot: s, temperature: T, seed: 5, step: s });
  const draws = await gpu.read(o2) as Uint32Array;
  const z = small.reduce((a, v) => a + Math.exp(v / T), 0);
  for (let i = 0; i < 4; i++) {
    const freq = draws.filter((d) => d === i).length / N;
    const p = Math.exp(small[i] / T) / z;
    assert.ok(Math.abs(freq - p) < 0.03, `token ${i}: frequency ${freq} vs probability ${p}`);
  }
  for (const t of [ls, n2, o2]) t.release();
});
