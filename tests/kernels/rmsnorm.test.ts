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

Deno.test("rmsnorm backward matches the f64 reference (dx and row-summed dw)", async () => {
  const gpu = await testGpu();
  for (const [N, C] of [[1, 64], [3, 172], [17, 33], [70, 5]]) {
    const xh = randn(N * C, N + C, 1.5), wh = randn(C, C), dyh = randn(N * C, N * C + 3);
    const x = gpu.upload(xh, [N, C]), w = gpu.upload(wh, [C]), dy = gpu.upload(dyh, [N, C]);
    const { y, rstd } = rmsnorm(gpu, x, w, { N, C, eps: EPS, saveRstd: true });
    const { dx, dw } = rmsnormBackward(gpu, dy, x, w, rstd!, { N, C, wantDw: true });
    const ref = rmsnormBackwardReference(dyh, xh, wh, N, C, EPS);
    assertClose(await gpu.readF32(dx), ref.dx, 1e-5, 1e-5, `dx N=${N} C=${C}`);
    // dw sums N rows in f32
    assertClose(await gpu.readF32(dw!), ref.dw, 1e-5, 1e-5, `dw N=${N} C=${C}`);
    const again = rmsnormBackward(gpu, dy, x, w, rstd!, { N, C });
    assert.equal(again.dw, undefined);
    assert.deepEqual(await gpu.readF32(again.dx), await gpu.readF32(dx), "deterministic");
    for (const t of [x, w, dy, y, rstd!, dx, dw!, again.dx]) t.release();
  }
});

Deno.test("rmsnorm backward agrees with central finite differences of sum(y * R)", async () => {
  const gpu = await testGpu();
  const N = 3, C = 33;
  const xh = randn(N * C, 1), wh = randn(C, 2), R = randn(N * C, 3);
  const loss = async (xv: Float32Array, wv: Float32Array) => {
    const x = gpu.upload(xv, [N, C]), w = gpu.upload(wv, [C]);
    const { y } = rmsnorm(gpu, x, w, { N, C, eps: EPS });
    const yh = await gpu.readF32(y);
    for (const t of [x, w, y]) t.release();
    let s = 0;
    for (let i = 0; i < yh.length; i++) s += yh[i] * R[i];
    return s;
  };
  const x = gpu.upload(xh, [N, C]), w = gpu.upload(wh, [C]), dy = gpu.upload(R, [N, C]);
  const { y, rstd } = rmsnorm(gpu, x, w, { N, C, eps: EPS, saveRstd: true });
  const { dx, dw } = rmsnormBackward(gpu, dy, x, w, rstd!, { N, C, wantDw: true });
  const gx = await gpu.readF32(dx), gw = await gpu.readF32(dw!);
  const h = 1e-2;
  // f32 forward noise ~1e-6 / (2h) plus O(h^2) curvature: 3e-3 is well above both
  for (const i of [0, 5, 32, 40, 66, 98]) {
    const p = Float32Array.from(xh), m = Float32Array.from(xh);
    p[i] += h;
    m[i] -= h;
    const fd = (await loss(p, wh) - await loss(m, wh)) / (p[i] - m[i]);
    assert.ok(Math.abs(fd - gx[i]) < 3e-3, `dx[${i}]: fd ${fd} vs ${gx[i]}`);
  }
  for (const c of [0, 7, 32]) {
    const p = Float32Array.from(wh), m = Float32Array.from(wh);
    p[c] += h;
    m[c] -= h;
    const fd = (await loss(xh, p) - await loss(xh, m)) / (p[c] - m[c]);
    assert.ok(Math.abs(fd - gw[c]) < 3e-3, `dw[${c}]: fd ${fd} vs ${gw[c]}`);
  }
  for (const t of [x, w, dy, y, rstd!, dx, dw!]) t.release();
});
