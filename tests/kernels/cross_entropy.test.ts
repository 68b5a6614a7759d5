import assert from "node:assert/strict";
import { crossEntropy, crossEntropyReference } from "../../src/kernels/cross_entropy.ts";
import { assertClose, randn, rng, testGpu } from "../helpers.ts";

function targetsFor(N: number, V: number, seed: number): Int32Array {
  const r = rng(seed);
  // every 5th row ignored (-100), the rest uniform over the vocabulary
  return Int32Array.from({ length: N }, (_, i) => (i % 5 === 3 ? -100 : Math.floor(r() * V)));
}

Deno.test("crossEntropy: loss and dlogits match the f64 reference (separate and in place)", async () => {
  const gpu = await testGpu();
  for (const [N, V] of [[1, 1], [3, 17], [7, 63], [5, 4097], [66, 512]]) {
    const lh = randn(N * V, N + V, 3), th = targetsFor(N, V, V);
    const targets = gpu.upload(th, [N]);
    const want = crossEntropyReference(lh, th, { N, V, gradScale: 0.5 });
    const logits = gpu.upload(lh, [N, V]);
    const { loss, dlogits } = crossEntropy(gpu, logits, targets, { N, V, grad: true, gradScale: 0.5 });
    // f32 log-sum-exp over V terms of scale 3: ~1e-6 relative error in the sum
    assertClose(await gpu.readF32(loss), want.loss, 2e-5, 1e-5, `loss N=${N} V=${V}`);
    assertClose(await gpu.readF32(dlogits!), want.dlogits, 1e-6, 1e-5, `dlogits N=${N} V=${V}`);
    const onlyLoss = crossEntropy(gpu, logits, targets, { N, V });
    assert.equal(onlyLoss.dlogits, undefined);
    assertClose(await gpu.readF32(onlyLoss.loss), want.loss, 2e-5, 1e-5, `loss only N=${N} V=${V}`);
    const inPlace = crossEntropy(gpu, logits, targets, { N, V, grad: true, gradScale: 0.5, inPlace: true });
    assert.equal(inPlace.dlogits, logits);
    assertClose(await gpu.readF32(inPlace.loss), want.loss, 2e-5, 1e-5, `in-place loss N=${N} V=${V}`);
    assertClose(await gpu.readF32(logits), want.dlogits, 1e-6, 1e-5, `in-place dlogits N=${N} V=${V}`);
    for (const t of [targets, logits, loss, dlogits!, onlyLoss.loss, inPlace.loss]) t.release();
  }
});

Deno.test("crossEntropy: large logits are stable, ignored rows are zero, out-of-vocab target is NaN", async () => {
  const gpu = await testGpu();
  const V = 5;
  const lh = new Float32Array([1000, 999, -1000, 0, 998, /**/ 1, 2, 3, 4, 5, /**/ 1, 2, 3, 4, 5]);
  const th = new Int32Array([1, -100, 5]);
  const logits = gpu.upload(lh, [3, V]), targets = gpu.upload(th, [3]);
  const { loss, dlogits } = crossEntropy(gpu, logits, targets, { N: 3, V, grad: true });
  const l = await gpu.readF32(loss), d = await gpu.readF32(dlogits!);
  assertClose([l[0]], [crossEntropyReference(lh, th, { N: 3, V }).loss[0]], 1e-5, 0, "loss with logits ~1000");
  assert.equal(l[1], 0);
  assert.ok(d.subarray(5, 10).every((x) => x === 0), "ignored row has zero gradient");
  assert.ok(Number.isNaN(l[2]), "target >= V gives NaN");
  for (const t of [logits, targets, loss, dlogits!]) t.release();
});

Deno.test("crossEntropy backward matches central finite differences of the summed loss", async () => {
  const gpu = await testGpu();
  const N = 4, V = 9;
  const lh = randn(N * V, 77), th = targetsFor(N, V, 78);
  const targets = gpu.upload(th, [N]);
  const total = async (x: Float32Array) => {
    const t = gpu.upload(x, [N, V]);
    const { loss } = crossEntropy(gpu, t, targets, { N, V });
    const l = await gpu.readF32(loss);
    t.release(), loss.release();
    return l.reduce((s, v) => s + v, 0);
  };
  const logits = gpu.upload(lh, [N, V]);
  const { loss, dlogits } = crossEntropy(gpu, logits, targets, { N, V, grad: true });
  const d = await gpu.readF32(dlogits!);
  const eps = 1e-2; // f32 loss: eps 1e-2 keeps rounding (~1e-7/eps) and curvature (~eps²) both ~1e-4
  for (let i = 0; i < N * V; i++) {
    const xp = lh.slice(), xm = lh.slice();
    xp[i] += eps, xm[i] -= eps;
    const fd = (await total(xp) - await total(xm)) / (2 * eps);
    assert.ok(Math.abs(fd - d[i]) < 1e-3, `dlogits[${i}]: fd ${fd} vs ${d[i]}`);
  }
  for (const t of [targets, logits, loss, dlogits!]) t.release();
});

Deno.test("crossEntropy: bad arguments raise PeftError", async () => {
  const gpu = await testGpu();
  const logits = gpu.tensor([2, 3]), tf = gpu.tensor([2]), ti = gpu.tensor([2], "i32");
  assert.throws(() => crossEntropy(gpu, logits, tf, { N: 2, V: 3 }), /targets \[2\] f32 must be i32/);
  assert.throws(() => crossEntropy(gpu, logits, ti, { N: 2, V: 4 }), /logits \[2,3\] f32 must be f32 with N\*V/);
  assert.throws(() => crossEntropy(gpu, logits, ti, { N: 2, V: 3, inPlace: true }), /inPlace only makes sense with grad/);
  for (const t of [logits, tf, ti]) t.release();
});
