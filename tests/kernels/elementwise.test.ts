import assert from "node:assert/strict";
import {
  add,
  addReference,
  axpy,
  axpyReference,
  dropout,
  dropoutMaskReference,
  dropoutReference,
  mul,
  mulReference,
  scale,
  scaleReference,
} from "../../src/kernels/elementwise.ts";
import { assertClose, randn, testGpu } from "../helpers.ts";

// One f32 rounding per element: relative 1.2e-7, so 1e-6 absolute on N(0,1) data is generous.
const TOL = 1e-6;
const SIZES = [1, 3, 17, 4097];

Deno.test("elementwise add / axpy / scale / mul match references, out of place and in place", async () => {
  const gpu = await testGpu();
  for (const n of SIZES) {
    const ah = randn(n, n), bh = randn(n, n + 1);
    const a = gpu.upload(ah, [n]), b = gpu.upload(bh, [n]);
    assertClose(await gpu.readF32(add(gpu, a, b)), addReference(ah, bh), TOL, 0, `add n=${n}`);
    assertClose(await gpu.readF32(mul(gpu, a, b)), mulReference(ah, bh), TOL, 0, `mul n=${n}`);
    assertClose(await gpu.readF32(scale(gpu, a, -1.75)), scaleReference(ah, -1.75), TOL, 0, `scale n=${n}`);
    // in place: every op writes over its first input
    const c = gpu.upload(ah, [n]);
    axpy(gpu, c, b, 0.3);
    assertClose(await gpu.readF32(c), axpyReference(ah, bh, 0.3), TOL, 0, `axpy n=${n}`);
    add(gpu, c, b, c);
    assertClose(await gpu.readF32(c), addReference(axpyReference(ah, bh, 0.3), bh), 1e-5, 0, `add in place n=${n}`);
    const d = gpu.upload(ah, [n]);
    mul(gpu, d, b, d);
    scale(gpu, d, 2, d);
    assertClose(await gpu.readF32(d), scaleReference(mulReference(ah, bh), 2), TOL, 0, `mul+scale in place n=${n}`);
    for (const t of [a, b, c, d]) t.release();
  }
});

Deno.test("elementwise: more than 65535 workgroups (2D grid) reaches every element", async () => {
  const gpu = await testGpu();
  const n = 65535 * 64 + 4099;
  const ah = randn(n, 5), bh = randn(n, 6);
  const a = gpu.upload(ah, [n]), b = gpu.upload(bh, [n]);
  const c = add(gpu, a, b);
  assertClose(await gpu.readF32(c), addReference(ah, bh), TOL, 0, "add 2D grid");
  a.release(), b.release(), c.release();
});

Deno.test("dropout: matches the reference mask, keeps ~1-p, same seed same mask, p = 0 is identity", async () => {
  const gpu = await testGpu();
  for (const n of [...SIZES, 20000]) {
    const xh = randn(n, 9 + n);
    const x = gpu.upload(xh, [n]);
    for (const [p, seed] of [[0.1, 1], [0.5, 42], [0.9, 0xffffffff]]) {
      const y = await gpu.readF32(dropout(gpu, x, p, seed));
      assertClose(y, dropoutReference(xh, p, seed), TOL, 0, `dropout n=${n} p=${p}`);
      if (n === 20000) {
        const kept = dropoutMaskReference(n, p, seed).reduce((s, v) => s + v, 0) / n;
        assert.ok(Math.abs(kept - (1 - p)) < 0.02, `p=${p}: kept fraction ${kept}`);
        const other = dropoutMaskReference(n, p, (seed ^ 1) >>> 0);
        const same = dropoutMaskReference(n, p, seed).every((v, i) => v === other[i]);
        assert.ok(!same, "a different seed gives a different mask");
      }
    }
    assertClose(await gpu.readF32(dropout(gpu, x, 0, 7)), xh, 0, 0, "p = 0");
    x.release();
  }
});

Deno.test("dropout backward (same seed on dy) matches central finite differences", async () => {
  const gpu = await testGpu();
  const n = 37, p = 0.3, seed = 1234;
  const xh = randn(n, 1), r = randn(n, 2);
  const loss = async (v: Float32Array) => {
    const t = gpu.upload(v, [n]);
    const y = await gpu.readF32(dropout(gpu, t, p, seed));
    t.release();
    return y.reduce((s, yi, i) => s + yi * r[i], 0);
  };
  const dy = gpu.upload(r, [n]);
  const dx = await gpu.readF32(dropout(gpu, dy, p, seed));
  const eps = 1e-2;
  for (let i = 0; i < n; i++) {
    const xp = xh.slice(), xm = xh.slice();
    xp[i] += eps, xm[i] -= eps;
    const fd = (await loss(xp) - await loss(xm)) / (2 * eps);
    assert.ok(Math.abs(fd - dx[i]) < 1e-3 * Math.max(1, Math.abs(fd)), `dx[${i}]: fd ${fd} vs ${dx[i]}`);
  }
  dy.release();
});

Deno.test("elementwise: bad arguments raise PeftError", async () => {
  const gpu = await testGpu();
  const a = gpu.tensor([4]), b = gpu.tensor([5]);
  assert.throws(() => add(gpu, a, b), /\[4\] and \[5\] differ in size/);
  assert.throws(() => dropout(gpu, a, 1, 0), /p = 1 must be in \[0, 1\)/);
  assert.throws(() => dropout(gpu, a, 0.5, -1), /seed = -1 must be a u32/);
  a.release(), b.release();
});
