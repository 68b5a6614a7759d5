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

/** HF's rotate_half RoPE on x ([N, H·D], partial: the first ropeDim dims of each head), in f64: q·cos + rotate_half(q)·sin. */
function rotateHalfReference(x: Float32Array, c: { N: number; T: number; pos0: number; nHeads: number; headDim: number; ropeDim: number; base: number }, factors?: Float32Array): Float64Array {
  const { N, T, pos0, nHeads: H, headDim: D, ropeDim: R, base } = c;
  const y = Float64Array.from(x);
  for (let r = 0; r < N; r++) {
    for (let h = 0; h < H; h++) {
      const o = r * H * D + h * D;
      for (let d = 0; d < R; d++) {
        const i = d % (R / 2);
        const th = (pos0 + (r % T)) * Math.pow(base, -2 * i / R) / (factors?.[i] ?? 1);
        const rot = d < R / 2 ? -x[o + d + R / 2] : x[o + d - R / 2];
        y[o + d] = x[o + d] * Math.cos(th) + rot * Math.sin(th);
      }
    }
  }
  return y;
}

const NEOX_CASES = [
  // qwen2-like: 4 heads of 16, full rotation, theta 1e6
  { N: 6, T: 3, pos0: 0, nHeads: 4, headDim: 16, ropeDim: 16, base: 1e6, neox: true },
  // phi-4-mini-like partial rotation (3/4 of 24), decode position, odd head count
  { N: 1, T: 1, pos0: 33, nHeads: 3, headDim: 24, ropeDim: 18, base: 10000, neox: true },
  // long context
  { N: 17, T: 17, pos0: 1900, nHeads: 1, headDim: 64, ropeDim: 64, base: 10000, neox: true },
];

Deno.test("rope neox (pairs i, i + ropeDim/2) matches the reference and HF's rotate_half; dims past ropeDim untouched", async () => {
  const gpu = await testGpu();
  for (const [i, c] of NEOX_CASES.entries()) {
    const n = c.N * c.nHeads * c.headDim;
    const xh = randn(n, 70 + i);
    const x = gpu.upload(xh, [c.N, c.nHeads * c.headDim], "f32", "activations");
    const y = rope(gpu, x, c);
    const got = await gpu.readF32(y);
    assertClose(got, ropeReference(xh, c), 2e-6, 0, `neox vs reference, case ${i}`);
    // f64 angles vs llama.cpp's f32 theta: the angle differs by ~pos·2^-24
    assertClose(got, rotateHalfReference(xh, c), 1e-6 * (c.pos0 + c.T) + 2e-6, 0, `neox vs rotate_half, case ${i}`);
    const normal = ropeReference(xh, { ...c, neox: false });
    assert.ok(normal.some((v, k) => Math.abs(v - got[k]) > 1e-3), "neox differs from the adjacent-pair layout");
    for (let r = 0; r < c.N * c.nHeads; r++) {
      for (let d = c.ropeDim; d < c.headDim; d++) assert.equal(got[r * c.headDim + d], xh[r * c.headDim + d]);
    }
    rope(gpu, y, { ...c, inverse: true, out: y });
    assertClose(await gpu.readF32(y), xh, 3e-6, 0, `neox inverse, case ${i}`);
    x.release();
    y.release();
  }
});

Deno.test("rope with frequency factors (Llama 3 rope_freqs): theta / ff, both layouts; a new factor array gets its own table", async () => {
  const gpu = await testGpu();
  const c = { N: 9, T: 9, pos0: 40, nHeads: 2, headDim: 16, ropeDim: 16, base: 500000 };
  const ff = Float32Array.from({ length: 8 }, (_, i) => i < 2 ? 1 : i > 5 ? 8 : 1 + i);
  const xh = randn(c.N * 32, 90);
  for (const neox of [false, true]) {
    const x = gpu.upload(xh, [c.N, 32], "f32", "activations");
    const got = await gpu.readF32(rope(gpu, x, { ...c, neox, freqFactors: ff, out: x }));
    assertClose(got, ropeReference(xh, { ...c, neox, freqFactors: ff }), 2e-6, 0, `factors vs reference (neox ${neox})`);
    if (neox) assertClose(got, rotateHalfReference(xh, c, ff), 1e-4, 0, "factors vs rotate_half with inv_freq / ff");
    const plain = ropeReference(xh, { ...c, neox });
    assert.ok(plain.some((v, k) => Math.abs(v - got[k]) > 1e-3), "the factors change the rotation");
    // the table cached for (base, ropeDim) without factors is not reused
    const again = gpu.upload(xh, [c.N, 32], "f32", "activations");
    assertClose(await gpu.readF32(rope(gpu, again, { ...c, neox, out: again })), plain, 2e-6, 0, "no factors after factors");
    x.release();
    again.release();
  }
  const x = gpu.upload(xh, [c.N, 32], "f32", "activations");
  assert.throws(() => rope(gpu, x, { ...c, freqFactors: new Float32Array(7).fill(1) }), /freqFactors must be 8 positive numbers/);
  x.release();
});

Deno.test("rope neox backward agrees with central finite differences", async () => {
  const gpu = await testGpu();
  const c = { N: 3, T: 3, pos0: 2, nHeads: 2, headDim: 8, ropeDim: 6, base: 10000, neox: true, freqFactors: Float32Array.from([1, 2, 4]) };
  const n = c.N * c.nHeads * c.headDim;
  const xh = randn(n, 3), R = randn(n, 4);
  const loss = (xv: Float32Array) => ropeReference(xv, c).reduce((s, v, i) => s + v * R[i], 0);
  const dy = gpu.upload(R, [c.N, 16], "f32", "activations");
  const g = await gpu.readF32(rope(gpu, dy, { ...c, inverse: true, out: dy }));
  for (const i of [0, 1, 2, 3, 5, 7, 16, 19, 33, 47]) {
    const p = Float32Array.from(xh), m = Float32Array.from(xh);
    p[i] += 1e-2;
    m[i] -= 1e-2;
    const fd = (loss(p) - loss(m)) / (p[i] - m[i]);
    assert.ok(Math.abs(fd - g[i]) < 1e-4, `dx[${i}]: fd ${fd} vs ${g[i]}`);
  }
  dy.release();
});
