/** Activations (shaders/activation.wgsl) and 2-D block copies (shaders/copy_block.wgsl) against their CPU references. */
import assert from "node:assert/strict";
import { ACTIVATIONS, activation, activationBackward, activationBackwardReference, activationReference } from "../../src/kernels/activation.ts";
import { copyBlock, copyBlockReference } from "../../src/kernels/copy_block.ts";
import { assertClose, randn, testGpu } from "../helpers.ts";

Deno.test("activation: forward and backward of relu, tanh, sigmoid, silu, gelu match f64 references (incl. saturating inputs)", async () => {
  const gpu = await testGpu();
  for (const n of [1, 3, 17, 4097]) {
    const x = randn(n, n, 3);
    if (n > 3) x.set([-100, 100, 0, -1e-8]);
    const dy = randn(n, n + 1);
    const X = gpu.upload(x, [n]), DY = gpu.upload(dy, [n]);
    for (const fn of ACTIVATIONS) {
      const y = activation(gpu, X, fn), dx = activationBackward(gpu, DY, X, fn);
      assertClose(await gpu.readF32(y), activationReference(x, fn), 2e-6, 2e-6, `${fn} forward n=${n}`);
      assertClose(await gpu.readF32(dx), activationBackwardReference(dy, x, fn), 2e-6, 2e-6, `${fn} backward n=${n}`);
      y.release();
      dx.release();
    }
    X.release();
    DY.release();
  }
});

Deno.test("copyBlock: blocks copied and accumulated at offsets match the reference; bad blocks are refused", async () => {
  const gpu = await testGpu();
  const src = randn(17 * 13, 1), dst0 = randn(9 * 11, 2);
  const S = gpu.upload(src, [17, 13]);
  for (const b of [
    { rows: 1, cols: 1, srcCols: 13, srcRow: 0, srcCol: 0, dstCols: 11, dstRow: 8, dstCol: 10 },
    { rows: 9, cols: 11, srcCols: 13, srcRow: 8, srcCol: 2, dstCols: 11, dstRow: 0, dstCol: 0, accumulate: true },
    { rows: 3, cols: 5, srcCols: 13, srcRow: 14, srcCol: 7, dstCols: 11, dstRow: 2, dstCol: 3 },
  ]) {
    const D = gpu.upload(dst0, [9, 11], "f32", "activations");
    copyBlock(gpu, S, D, b);
    const want = dst0.slice();
    copyBlockReference(src, want, b);
    assertClose(await gpu.readF32(D), want, 0, 0, JSON.stringify(b));
    D.release();
  }
  const D = gpu.tensor([9, 11]);
  assert.throws(() => copyBlock(gpu, S, D, { rows: 2, cols: 5, srcCols: 13, srcRow: 16, srcCol: 0, dstCols: 11, dstRow: 0, dstCol: 0 }), /source rows/);
  assert.throws(() => copyBlock(gpu, S, D, { rows: 1, cols: 5, srcCols: 13, srcRow: 0, srcCol: 0, dstCols: 11, dstRow: 0, dstCol: 7 }), /do not fit/);
  D.release();
  S.release();
});
