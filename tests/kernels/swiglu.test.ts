import assert from "node:assert/strict";
import { swiglu, swigluBackward, swigluBackwardReference, swigluReference } from "../../src/kernels/swiglu.ts";
import { assertClose, randn, testGpu } from "../helpers.ts";

Deno.test("swiglu forward matches the f64 reference, including saturated gates", async () => {
  const gpu = await testGpu();
  for (const [N, F] of [[1, 33], [3, 172], [17, 64]]) {
    const gh = randn(N * F, N + F, 3), uh = randn(N * F, N * F, 1);
    gh[0] = -100; // exp(100) overflows f32: sigmoid must be 0, not NaN
    if (gh.length > 1) gh[1] = 100;
    const gate = gpu.upload(gh, [N, F]), up = gpu.upload(uh, [N, F]);
    const h = swiglu(gpu, gate, up);
    assert.deepEqual(h.shape, [N, F]);
    const got = await gpu.readF32(h);
    assert.ok(got.every(Number.isFinite), "no NaN/Inf");
    assertClose(got, swigluReference(gh, uh), 1e-5, 1e-5, `h N=${N} F=${F}`);
    for (const t of [gate, up, h]) t.release();
  }
});

Deno.test("swiglu: size mismatch is reported", async () => {
  const gpu = await testGpu();
  const a = gpu.tensor([3, 4]), b = gpu.tensor([3, 5]);
  assert.throws(() => swiglu(gpu, a, b), /swiglu gate\/up: shapes \[3,4\] and \[3,5\] differ/);
  a.release();
  b.release();
});

Deno.test("swiglu backward matches the f64 reference", async () => {
  const gpu = await testGpu();
  for (const [N, F] of [[1, 33], [3, 172], [17, 5]]) {
    const gh = randn(N * F, N + 2 * F, 3), uh = randn(N * F, 9), dhh = randn(N * F, 10);
    gh[0] = -100;
    const gate = gpu.upload(gh, [N, F]), up = gpu.upload(uh, [N, F]), dh = gpu.upload(dhh, [N, F]);
    const { dgate, dup } = swigluBackward(gpu, dh, gate, up);
    const ref = swigluBackwardReference(dhh, gh, uh);
    const g = await gpu.readF32(dgate);
    assert.ok(g.every(Number.isFinite));
    assertClose(g, ref.dgate, 1e-5, 1e-5, `dgate N=${N} F=${F}`);
    assertClose(await gpu.readF32(dup), ref.dup, 1e-5, 1e-5, `dup N=${N} F=${F}`);
    for (const t of [gate, up, dh, dgate, dup]) t.release();
  }
});

Deno.test("swiglu backward agrees with central finite differences of sum(h * R)", async () => {
  const gpu = await testGpu();
  const N = 3, F = 7, n = N * F;
  const gh = randn(n, 1, 2), uh = randn(n, 2), R = randn(n, 3);
  const loss = async (g: Float32Array, u: Float32Array) => {
    const gate = gpu.upload(g, [N, F]), up = gpu.upload(u, [N, F]);
    const h = swiglu(gpu, gate, up);
    const hh = await gpu.readF32(h);
    for (const t of [gate, up, h]) t.release();
    return hh.reduce((s, v, i) => s + v * R[i], 0);
  };
  const gate = gpu.upload(gh, [N, F]), up = gpu.upload(uh, [N, F]), dh = gpu.upload(R, [N, F]);
  const { dgate, dup } = swigluBackward(gpu, dh, gate, up);
  const dg = await gpu.readF32(dgate), du = await gpu.readF32(dup);
  const step = 1e-2;
  for (const i of [0, 4, 11, 20]) {
    for (const [which, grad] of [["gate", dg], ["up", du]] as const) {
      const base = which === "gate" ? gh : uh;
      const p = Float32Array.from(base), m = Float32Array.from(base);
      p[i] += step;
      m[i] -= step;
      const fd = which === "gate"
        ? (await loss(p, uh) - await loss(m, uh)) / (p[i] - m[i])
        : (await loss(gh, p) - await loss(gh, m)) / (p[i] - m[i]);
      assert.ok(Math.abs(fd - grad[i]) < 2e-3, `d${which}[${i}]: fd ${fd} vs ${grad[i]}`);
    }
  }
  for (const t of [gate, up, dh, dgate, dup]) t.release();
});
