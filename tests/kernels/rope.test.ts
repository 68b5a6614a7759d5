import assert from "node:assert/strict";
import { rope, ropeReference } from "../../src/kernels/rope.ts";
import { assertClose, randn, testGpu } from "../helpers.ts";

const CASES = [
  // stories260K-like: 8 heads of 8, full rotation
  { N: 5, T: 5, pos0: 0, nHeads: 8, headDim: 8, ropeDim: 8, base: 10000 },
  // 3 sequences of 1 token, decode position, partial rotation (dims >= ropeDim untouched)
  { N: 3, T: 1, pos0: 17, nHeads: 3, headDim: 16, ropeDim: 10, base: 10000 },
  // 2 sequences of 17 tokens far into a long context, odd head count, other base
  { N: 34, T: 17, pos0: 2031, nHeads: 5, headDim: 64, ropeDim: 64, base: 500000 },
];

Deno.test("rope forward matches the reference (f32 theta like llama.cpp)", async () => {
  const gpu = await testGpu();
  for (const [i, c] of CASES.entries()) {
    const n = c.N * c.nHeads * c.headDim;
    const xh = randn(n, 40 + i);
    const x = gpu.upload(xh, [c.N, c.nHeads * c.headDim], "f32", "activations");
    const y = rope(gpu, x, c);
    const ref = ropeReference(xh, c);
    // one rotation of f32 values with f32-rounded cos/sin: error ~1e-7 * |x|
    assertClose(await gpu.readF32(y), ref, 2e-6, 0, `rope case ${i}`);
    // dims past ropeDim are untouched, exactly
    const got = await gpu.readF32(y);
    for (let r = 0; r < c.N * c.nHeads; r++) {
      for (let d = c.ropeDim; d < c.headDim; d++) assert.equal(got[r * c.headDim + d], xh[r * c.headDim + d]);
    }
    x.release();
    y.release();
  }
});

Deno.test("rope inverse undoes rope, in place", async () => {
  const gpu = await testGpu();
  for (const [i, c] of CASES.entries()) {
    const n = c.N * c.nHeads * c.headDim;
    const xh = randn(n, 50 + i);
    const x = gpu.upload(xh, [c.N, c.nHeads * c.headDim], "f32", "activations");
    assert.equal(rope(gpu, x, { ...c, out: x }), x);
    const rotated = await gpu.readF32(x);
    assert.ok(rotated.some((v, k) => Math.abs(v - xh[k]) > 1e-3), "rope changed something");
    rope(gpu, x, { ...c, inverse: true, out: x });
    assertClose(await gpu.readF32(x), xh, 3e-6, 0, `rope∘inverse case ${i}`);
    x.release();
  }
});

Deno.test("rope: rotation at position 1 is the plain 2-D rotation by base^(-2i/d)", async () => {
  const gpu = await testGpu();
  // x = (1, 0) pairs -> (cos theta_i, sin theta_i), theta_i = 10000^(-2i/8)
  const xh = new Float32Array(8);
  for (let i = 0; i < 4; i++) xh[2 * i] = 1;
  const x = gpu.upload(xh, [1, 8], "f32", "activations");
  const y = await gpu.readF32(rope(gpu, x, { N: 1, T: 1, pos0: 1, nHeads: 1, headDim: 8, ropeDim: 8, base: 10000 }));
  for (let i = 0; i < 4; i++) {
    const th = Math.pow(10000, -i / 4);
    assert.ok(Math.abs(y[2 * i] - Math.cos(th)) < 1e-6 && Math.abs(y[2 * i + 1] - Math.sin(th)) < 1e-6, `pair ${i}`);
  }
  assert.throws(() => rope(gpu, x, { N: 1, T: 1, pos0: 0, nHeads: 1, headDim: 8, ropeDim: 9, base: 10000 }), /ropeDim=9 must be even/);
  assert.throws(() => rope(gpu, x, { N: 3, T: 2, pos0: 0, nHeads: 1, headDim: 8, ropeDim: 8, base: 10000 }), /N=3 rows is not a whole number/);
  x.release();
});

Deno.test("rope backward (inverse rotation of dy) agrees with central finite differences of sum(rope(x) * R)", async () => {
  const gpu = await testGpu();
  const c = { N: 4, T: 2, pos0: 5, nHeads: 2, headDim: 8, ropeDim: 6, base: 10000 };
  const n = c.N * c.nHeads * c.headDim;
  const xh = randn(n, 1), R = randn(n, 2);
  const loss = async (xv: Float32Array) => {
    const x = gpu.upload(xv, [c.N, 16], "f32", "activations");
    const y = await gpu.readF32(rope(gpu, x, { ...c, out: x }));
    x.release();
    return y.reduce((s, v, i) => s + v * R[i], 0);
  };
  const dy = gpu.upload(R, [c.N, 16], "f32", "activations");
  const dx = rope(gpu, dy, { ...c, inverse: true });
  const g = await gpu.readF32(dx);
  assertClose(g, ropeReference(R, { ...c, inverse: true }), 2e-6, 0, "inverse vs reference");
  for (const i of [0, 1, 6, 7, 17, 44, 63]) {
    const p = Float32Array.from(xh), m = Float32Array.from(xh);
    p[i] += 1e-2;
    m[i] -= 1e-2;
    const fd = (await loss(p) - await loss(m)) / (p[i] - m[i]);
    assert.ok(Math.abs(fd - g[i]) < 2e-3, `dx[${i}]: fd ${fd} vs ${g[i]}`);
  }
  dy.release();
  dx.release();
});
