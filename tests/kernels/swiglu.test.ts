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
