/** Column/row broadcast ops, column sums and row norms (shaders/broadcast.wgsl) against their CPU references. */
import assert from "node:assert/strict";
import {
  addCols, addColsReference, colSum, colSumReference, div, divReference, mulCols, mulColsReference, mulRows, mulRowsReference, rowNorms,
  rowNormsReference,
} from "../../src/kernels/broadcast.ts";
import { assertClose, randn, testGpu } from "../helpers.ts";

const SHAPES: [number, number][] = [[1, 1], [1, 3], [3, 1], [17, 5], [4097, 3], [3, 4097], [65, 130]];

Deno.test("broadcast: mulCols, mulRows, addCols, div match references on awkward shapes", async () => {
  const gpu = await testGpu();
  for (const [rows, cols] of SHAPES) {
    const a = randn(rows * cols, rows + cols), v = randn(cols, 7), w = randn(rows, 8);
    const A = gpu.upload(a, [rows, cols]), Vc = gpu.upload(v, [cols]), Vr = gpu.upload(w, [rows]);
    for (const [got, want, name] of [
      [mulCols(gpu, A, Vc, rows, cols), mulColsReference(a, v, rows, cols), "mulCols"],
      [mulRows(gpu, A, Vr, rows, cols), mulRowsReference(a, w, rows, cols), "mulRows"],
      [addCols(gpu, A, Vc, rows, cols), addColsReference(a, v, rows, cols), "addCols"],
    ] as const) {
      assertClose(await gpu.readF32(got), want, 0, 0, `${name} [${rows},${cols}]`);
      got.release();
    }
    const d = randn(cols, 9).map((x) => x + Math.sign(x) * 0.5);
    const D = gpu.upload(d, [cols]);
    const q = div(gpu, Vc, D);
    assertClose(await gpu.readF32(q), divReference(v, d), 1e-6, 1e-6, `div [${cols}]`);
    for (const t of [A, Vc, Vr, D, q]) t.release();
  }
});

Deno.test("broadcast: colSum (with and without a product, accumulating) and rowNorms match f64 references", async () => {
  const gpu = await testGpu();
  for (const [rows, cols] of SHAPES) {
    const a = randn(rows * cols, rows * 3 + cols), b = randn(rows * cols, 5), start = randn(cols, 6);
    const A = gpu.upload(a, [rows, cols]), B = gpu.upload(b, [rows, cols]);
    const s1 = colSum(gpu, A, undefined, rows, cols);
    assertClose(await gpu.readF32(s1), colSumReference(a, undefined, rows, cols), 1e-4, 1e-5, `colSum [${rows},${cols}]`);
    const into = gpu.upload(start, [cols], "f32", "activations");
    colSum(gpu, A, B, rows, cols, into);
    assertClose(await gpu.readF32(into), colSumReference(a, b, rows, cols, Float32Array.from(start)), 1e-4, 1e-5, `colSum product + into [${rows},${cols}]`);
    const n = rowNorms(gpu, A, rows, cols);
    assertClose(await gpu.readF32(n), rowNormsReference(a, rows, cols), 1e-4, 1e-5, `rowNorms [${rows},${cols}]`);
    for (const t of [A, B, s1, into, n]) t.release();
  }
  assert.throws(() => colSum(gpu, gpu.tensor([3, 2]), undefined, 2, 2), /must be f32 \[2, 2\]/);
});
