import assert from "node:assert/strict";
import { rmsnorm, rmsnormBackward, rmsnormBackwardReference, rmsnormReference } from "../../src/kernels/rmsnorm.ts";
import { assertClose, randn, testGpu } from "../helpers.ts";

const EPS = 1e-5;

Deno.test("rmsnorm forward matches the f64 reference on awkward shapes", async () => {
  const gpu = await testGpu();
  for (const N of [1, 3, 17]) {
    for (const C of [64, 172, 33]) {
      const xh = randn(N * C, N * 100 + C, 2), wh = randn(C, C + 7, 1);
      const x = gpu.upload(xh, [N, C]), w = gpu.upload(wh, [C]);
      const { y, rstd } = rmsnorm(gpu, x, w, { N, C, eps: EPS, saveRstd: true });
      const ref = rmsnormReference(xh, wh, N, C, EPS);
      // f32 sum of C squares then a few multiplies: relative error ~1e-6
      assertClose(await gpu.readF32(y), ref.y, 1e-5, 1e-5, `y N=${N} C=${C}`);
      assertClose(await gpu.readF32(rstd!), ref.rstd, 0, 1e-5, `rstd N=${N} C=${C}`);
      for (const t of [x, w, y, rstd!]) t.release();
    }
  }
});

Deno.test("rmsnorm forward: out parameter, no rstd by default, bad input errors", async () => {
  const gpu = await testGpu();
  const N = 3, C = 33;
  const xh = randn(N * C, 5), wh = randn(C, 6);
  const x = gpu.upload(xh, [N, C]), w = gpu.upload(wh, [C]), out = gpu.tensor([N, C]);
  const r = rmsnorm(gpu, x, w, { N, C, eps: EPS, out });
  assert.equal(r.y, out);
  assert.equal(r.rstd, undefined);
  assertClose(await gpu.readF32(out), rmsnormReference(xh, wh, N, C, EPS).y, 1e-5, 1e-5, "y into out");
  assert.throws(() => rmsnorm(gpu, x, w, { N: 4, C, eps: EPS }), /rmsnorm x: tensor \[3,33\] has 99 elements, needs 132/);
  assert.throws(() => rmsnorm(gpu, x, w, { N, C, eps: EPS, out: x }), /out must not alias x/);
  for (const t of [x, w, out]) t.release();
});
