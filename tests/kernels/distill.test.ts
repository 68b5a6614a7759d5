import assert from "node:assert/strict";
import { generalizedJsd, generalizedJsdReference } from "../../src/kernels/distill.ts";
import { assertClose, randn, rng, testGpu } from "../helpers.ts";

function targetsFor(N: number, V: number, seed: number): Int32Array {
  const r = rng(seed);
  // every 4th row masked (-100), the rest any token
  return Int32Array.from({ length: N }, (_, i) => (i % 4 === 2 ? -100 : Math.floor(r() * V)));
}

const BETAS = [0, 0.5, 1, 0.1, 0.9];

Deno.test("generalizedJsd: loss within 1e-5 and dlogits match the f64 reference (beta 0, 0.5, 1, 0.1, 0.9; temperature 1 and 2)", async () => {
  const gpu = await testGpu();
  for (const [N, V] of [[1, 1], [3, 17], [7, 63], [5, 4097], [66, 512]]) {
    const xs = randn(N * V, N + V, 2), ts = randn(N * V, 3 * N + V, 2.5), th = targetsFor(N, V, V);
    const logits = gpu.upload(xs, [N, V]), teacher = gpu.upload(ts, [N, V]), targets = gpu.upload(th, [N]);
    for (const beta of BETAS) {
      for (const temperature of [1, 2]) {
        const what = `N=${N} V=${V} beta=${beta} T=${temperature}`;
        const want = generalizedJsdReference(xs, ts, th, { N, V, beta, temperature, gradScale: 0.5 });
        const { loss, dlogits } = generalizedJsd(gpu, logits, teacher, targets, { N, V, beta, temperature, grad: "write", gradScale: 0.5 });
        assertClose(await gpu.readF32(loss), want.loss, 1e-5, 0, `loss ${what}`);
        assertClose(await gpu.readF32(dlogits!), want.dlogits, 1e-6, 1e-5, `dlogits ${what}`);
        const only = generalizedJsd(gpu, logits, teacher, targets, { N, V, beta, temperature });
        assert.equal(only.dlogits, undefined);
        assertClose(await gpu.readF32(only.loss), want.loss, 1e-5, 0, `loss only ${what}`);
        for (const t of [loss, dlogits!, only.loss]) t.release();
      }
    }
    for (const t of [logits, teacher, targets]) t.release();
  }
});

Deno.test("generalizedJsd: in place over the logits, added into another gradient, teacher log-probs at temperature 1", async () => {
  const gpu = await testGpu();
  const N = 9, V = 130, beta = 0.5, temperature = 2;
  const xs = randn(N * V, 5, 3), ts = randn(N * V, 6, 3), th = targetsFor(N, V, 7), base = randn(N * V, 8);
  const want = generalizedJsdReference(xs, ts, th, { N, V, beta, temperature, gradScale: 0.25 });
  const targets = gpu.upload(th, [N]), teacher = gpu.upload(ts, [N, V]);

  const logits = gpu.upload(xs, [N, V]);
  const inPlace = generalizedJsd(gpu, logits, teacher, targets, { N, V, beta, temperature, grad: "inPlace", gradScale: 0.25 });
  assert.equal(inPlace.dlogits, logits);
  assertClose(await gpu.readF32(inPlace.loss), want.loss, 1e-5, 0, "in-place loss");
  assertClose(await gpu.readF32(logits), want.dlogits, 1e-6, 1e-5, "in-place dlogits");

  const fresh = gpu.upload(xs, [N, V]), into = gpu.upload(base, [N, V]);
  generalizedJsd(gpu, fresh, teacher, targets, { N, V, beta, temperature, grad: "accumulate", into, gradScale: 0.25 }).loss.release();
  assertClose(await gpu.readF32(into), base.map((b, i) => b + want.dlogits[i]), 1e-6, 1e-5, "accumulated dlogits");

  // A teacher given as log-probabilities at the temperature (a precomputed file) with teacherTemperature 1.
  const lt = new Float32Array(N * V);
  for (let n = 0; n < N; n++) {
    const row = ts.subarray(n * V, (n + 1) * V).map((v) => v / temperature);
    const mx = Math.max(...row), lse = mx + Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0));
    row.forEach((v, j) => lt[n * V + j] = v - lse);
  }
  const tlp = gpu.upload(lt, [N, V]);
  const fromLogProbs = generalizedJsd(gpu, fresh, tlp, targets, { N, V, beta, temperature, teacherTemperature: 1 });
  assertClose(await gpu.readF32(fromLogProbs.loss), want.loss, 1e-5, 0, "teacher as log-probs");
  for (const t of [targets, teacher, logits, inPlace.loss, fresh, into, tlp, fromLogProbs.loss]) t.release();
});

Deno.test("generalizedJsd: masked rows are zero; identical distributions give zero loss and gradient; large logits are stable", async () => {
  const gpu = await testGpu();
  const V = 6;
  const xs = new Float32Array([1000, 999, -1000, 0, 998, 3, /**/ 1, 2, 3, 4, 5, 6, /**/ 0.5, -1, 2, 0, 1, 1]);
  const ts = new Float32Array([999, 1000, -1000, 1, 997, 3, /**/ 6, 5, 4, 3, 2, 1, /**/ 0.5, -1, 2, 0, 1, 1]);
  const th = new Int32Array([4, -100, 0]);
  const logits = gpu.upload(xs, [3, V]), teacher = gpu.upload(ts, [3, V]), targets = gpu.upload(th, [3]);
  for (const beta of BETAS) {
    const want = generalizedJsdReference(xs, ts, th, { N: 3, V, beta });
    const { loss, dlogits } = generalizedJsd(gpu, logits, teacher, targets, { N: 3, V, beta, grad: "write" });
    const l = await gpu.readF32(loss), d = await gpu.readF32(dlogits!);
    assertClose([l[0]], [want.loss[0]], 1e-5, 0, `beta ${beta}: loss with logits ~1000`);
    assert.ok(Number.isFinite(l[0]) && l[0] > 0);
    assert.equal(l[1], 0, "masked row: no loss");
    assert.ok(d.subarray(V, 2 * V).every((x) => x === 0), "masked row: no gradient");
    assert.ok(Math.abs(l[2]) < 1e-6 && d.subarray(2 * V).every((x) => Math.abs(x) < 1e-6), `beta ${beta}: same distributions, zero divergence`);
    loss.release(), dlogits!.release();
  }
  for (const t of [logits, teacher, targets]) t.release();
});

Deno.test("generalizedJsd backward matches central finite differences (GPU in f32, reference in f64), temperature 2", async () => {
  const gpu = await testGpu();
  const N = 3, V = 7, temperature = 2;
  const xs = randn(N * V, 91), ts = randn(N * V, 92, 1.5), th = targetsFor(N, V, 93);
  const targets = gpu.upload(th, [N]), teacher = gpu.upload(ts, [N, V]);
  const sumGpu = async (x: Float32Array, beta: number) => {
    const t = gpu.upload(x, [N, V]);
    const { loss } = generalizedJsd(gpu, t, teacher, targets, { N, V, beta, temperature });
    const l = await gpu.readF32(loss);
    t.release(), loss.release();
    return l.reduce((s, v) => s + v, 0);
  };
  const sumRef = (x: Float64Array, beta: number) => generalizedJsdReference(x, ts, th, { N, V, beta, temperature }).loss.reduce((s, v) => s + v, 0);
  for (const beta of [0, 0.5, 1, 0.3]) {
    const logits = gpu.upload(xs, [N, V]);
    const { loss, dlogits } = generalizedJsd(gpu, logits, teacher, targets, { N, V, beta, temperature, grad: "write" });
    const d = await gpu.readF32(dlogits!);
    const ref = generalizedJsdReference(xs, ts, th, { N, V, beta, temperature }).dlogits;
    for (let i = 0; i < N * V; i++) {
      // f32: eps 1e-2 keeps rounding (~1e-7/eps) and curvature (~eps²) near 1e-4
      const xp = xs.slice(), xm = xs.slice();
      xp[i] += 1e-2, xm[i] -= 1e-2;
      const fd = (await sumGpu(xp, beta) - await sumGpu(xm, beta)) / 2e-2;
      assert.ok(Math.abs(fd - d[i]) < 2e-4, `beta ${beta} dlogits[${i}]: fd ${fd} vs gpu ${d[i]}`);
      // f64: the reference's own derivative to 1e-8
      const rp = Float64Array.from(xs), rm = Float64Array.from(xs);
      rp[i] += 1e-5, rm[i] -= 1e-5;
      const fd64 = (sumRef(rp, beta) - sumRef(rm, beta)) / 2e-5;
      assert.ok(Math.abs(fd64 - ref[i]) < 1e-8, `beta ${beta} reference dlogits[${i}]: fd ${fd64} vs ${ref[i]}`);
    }
    for (const t of [logits, loss, dlogits!]) t.release();
  }
  targets.release(), teacher.release();
});

Deno.test("generalizedJsd: bad arguments raise PeftError", async () => {
  const gpu = await testGpu();
  const a = gpu.tensor([2, 3]), b = gpu.tensor([2, 3]), ti = gpu.tensor([2], "i32"), tf = gpu.tensor([2]);
  assert.throws(() => generalizedJsd(gpu, a, b, ti, { N: 2, V: 3, beta: 1.5 }), /beta = 1.5 must be in \[0, 1\]/);
  assert.throws(() => generalizedJsd(gpu, a, b, ti, { N: 2, V: 3, beta: 0, temperature: 0 }), /temperature = 0 must be a number > 0/);
  assert.throws(() => generalizedJsd(gpu, a, b, tf, { N: 2, V: 3, beta: 0 }), /targets \[2\] f32 must be i32/);
  assert.throws(() => generalizedJsd(gpu, a, b, ti, { N: 2, V: 4, beta: 0 }), /logits \[2,3\] f32 must be f32 with N\*V/);
  assert.throws(() => generalizedJsd(gpu, a, b, ti, { N: 2, V: 3, beta: 0, grad: "accumulate" }), /into/);
  for (const t of [a, b, ti, tf]) t.release();
});
