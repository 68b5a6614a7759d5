import assert from "node:assert/strict";
import { adamwReference, adamwStep, type AdamwOptions, sumOfSquares, sumOfSquaresReference } from "../../src/kernels/adamw.ts";
import { assertClose, randn, testGpu } from "../helpers.ts";

Deno.test("adamw: several steps match the PyTorch-semantics reference (weight decay, gradScale)", async () => {
  const gpu = await testGpu();
  for (const n of [1, 3, 17, 4097]) {
    for (const [wd, gradScale] of [[0, undefined], [0.1, 0.25]] as const) {
      let host: { param: Float32Array; m: Float32Array; v: Float32Array } = { param: randn(n, n), m: new Float32Array(n), v: new Float32Array(n) };
      const param = gpu.upload(host.param, [n]), m = gpu.zeros([n]), v = gpu.zeros([n]);
      for (let step = 1; step <= 5; step++) {
        const gh = randn(n, 100 * step + n, 0.5);
        const grad = gpu.upload(gh, [n]);
        const o: AdamwOptions = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: wd, step, gradScale };
        adamwStep(gpu, { param, grad, m, v }, o);
        host = adamwReference({ ...host, grad: gh }, o);
        grad.release();
      }
      // The first step moves each weight by ~lr regardless of |g| (m̂/sqrt(v̂) = ±1), so f32
      // rounding of m/v enters scaled by lr: 1e-6 absolute is ample after 5 steps.
      const what = `n=${n} wd=${wd} gradScale=${gradScale}`;
      assertClose(await gpu.readF32(param), host.param, 1e-6, 1e-6, `param ${what}`);
      assertClose(await gpu.readF32(m), host.m, 1e-6, 1e-5, `m ${what}`);
      assertClose(await gpu.readF32(v), host.v, 1e-7, 1e-5, `v ${what}`);
      param.release(), m.release(), v.release();
    }
  }
});

Deno.test("adamw: weight decay alone shrinks param by (1 - lr*wd) when the gradient is zero", async () => {
  const gpu = await testGpu();
  const ph = randn(33, 3);
  const param = gpu.upload(ph, [33]), grad = gpu.zeros([33]), m = gpu.zeros([33]), v = gpu.zeros([33]);
  adamwStep(gpu, { param, grad, m, v }, { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.5, step: 1 });
  assertClose(await gpu.readF32(param), ph.map((x) => x * (1 - 0.05)), 1e-6, 0, "decayed param");
  for (const t of [param, grad, m, v]) t.release();
});

Deno.test("sumOfSquares: sizes 1, 3, 4097, 300000 and several tensors at once", async () => {
  const gpu = await testGpu();
  const hosts = [1, 3, 4097, 300000].map((n, i) => randn(n, 50 + i));
  const tensors = hosts.map((h) => gpu.upload(h, [h.length]));
  for (const [i, h] of hosts.entries()) {
    const got = (await gpu.readF32(sumOfSquares(gpu, [tensors[i]])))[0];
    const want = sumOfSquaresReference([h]);
    // f32 partial sums of up to ~4700 positive terms each: relative error ~1e-6 at most
    assert.ok(Math.abs(got - want) <= 1e-5 * want + 1e-7, `n=${h.length}: ${got} vs ${want}`);
  }
  const out = gpu.tensor([1]);
  sumOfSquares(gpu, tensors, out);
  const got = (await gpu.readF32(out))[0], want = sumOfSquaresReference(hosts);
  assert.ok(Math.abs(got - want) <= 1e-5 * want, `all: ${got} vs ${want}`);
  // deterministic: same inputs, same bits
  assert.equal((await gpu.readF32(sumOfSquares(gpu, tensors)))[0], got);
  assert.throws(() => sumOfSquares(gpu, [tensors[0]], tensors[0]), /out must not be one of the tensors/);
  assert.throws(() => sumOfSquares(gpu, []), /at least one tensor/);
  for (const t of [...tensors, out]) t.release();
});

Deno.test("adamw: bad options raise PeftError naming the option", async () => {
  const gpu = await testGpu();
  const t = gpu.tensor([4]), u = gpu.tensor([5]);
  const o = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
  assert.throws(() => adamwStep(gpu, { param: t, grad: t, m: t, v: t }, { ...o, step: 0 }), /step = 0 must be an integer >= 1/);
  assert.throws(() => adamwStep(gpu, { param: t, grad: t, m: t, v: t }, { ...o, beta2: 1 }), /beta2 = 1 must be in \[0, 1\)/);
  assert.throws(() => adamwStep(gpu, { param: t, grad: u, m: t, v: t }, o), /grad \[5\] f32 must match param \[4\]/);
  t.release(), u.release();
});
