import assert from "node:assert/strict";
import { matmul, matmulReference, type MatmulOptions } from "../../src/kernels/matmul.ts";
import { PeftError } from "../../src/errors.ts";
import { assertClose, randn, testGpu, MATMUL_LAYOUTS } from "../helpers.ts";

// f32 tolerance: inputs ~N(0,1), so |C| grows like sqrt(K); f32 rounding of a K-term sum is
// ~K * 6e-8 * sqrt(K) relative at worst, well under 1e-4 * max|C| + 1e-4 for K <= 200.
const ATOL = 1e-4, RTOL = 1e-4;

async function checkCase(o: MatmulOptions, seed: number) {
  const gpu = await testGpu();
  const aOff = o.aOffset ?? 0, bOff = o.bOffset ?? 0;
  const aHost = randn(aOff + o.M * o.K + 3, seed), bHost = randn(bOff + o.K * o.N + 5, seed + 1);
  const cHost = randn(o.M * o.N, seed + 2);
  const a = gpu.upload(aHost, [aHost.length]), b = gpu.upload(bHost, [bHost.length]);
  const out = o.accumulate ? gpu.upload(cHost, [o.M, o.N]) : undefined;
  const c = matmul(gpu, a, b, { ...o, out });
  const got = await gpu.readF32(c);
  const want = matmulReference(aHost, bHost, o, cHost);
  const name = `matmul ${JSON.stringify(o)}`;
  assertClose(got, want, ATOL, RTOL, name);
  a.release(), b.release(), c.release();
}


Deno.test("matmul tiled: ragged shapes, all four layouts", async () => {
  const shapes: [number, number, number][] = [[9, 1, 1], [17, 3, 33], [33, 65, 17], [65, 17, 3], [70, 129, 31], [128, 64, 16], [100, 70, 130]];
  let seed = 1;
  for (const [M, N, K] of shapes) for (const l of MATMUL_LAYOUTS) await checkCase({ M, N, K, ...l }, seed++);
});

Deno.test("matmul gemv (M <= 8): every M, ragged N and K, all layouts", async () => {
  let seed = 100;
  for (let M = 1; M <= 8; M++) {
    for (const [N, K] of [[1, 1], [3, 65], [17, 130], [70, 9]]) for (const l of MATMUL_LAYOUTS) await checkCase({ M, N, K, ...l }, seed++);
  }
});

Deno.test("matmul: alpha, accumulate and element offsets (tiled and gemv)", async () => {
  let seed = 300;
  for (const M of [2, 8, 9, 40]) {
    for (const l of MATMUL_LAYOUTS) {
      await checkCase({ M, N: 19, K: 23, ...l, alpha: -0.375, accumulate: true, aOffset: 7, bOffset: 13 }, seed++);
      await checkCase({ M, N: 33, K: 5, ...l, alpha: 2.5, aOffset: 1 }, seed++);
    }
  }
});

Deno.test("matmul: linear backward (dX = dY·W, dW = dYᵀ·X) matches central finite differences", async () => {
  const gpu = await testGpu();
  const rows = 11, inF = 13, outF = 7;
  const x = randn(rows * inF, 7), w = randn(outF * inF, 8, 0.5), r = randn(rows * outF, 9);
  // loss = Σ r ⊙ (x·Wᵀ): dY = r.
  const loss = async (xh: Float32Array, wh: Float32Array) => {
    const xt = gpu.upload(xh, [rows, inF]), wt = gpu.upload(wh, [outF, inF]);
    const y = await gpu.readF32(matmul(gpu, xt, wt, { M: rows, N: outF, K: inF, transB: true }));
    xt.release(), wt.release();
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i] * r[i];
    return s;
  };
  const xt = gpu.upload(x, [rows, inF]), wt = gpu.upload(w, [outF, inF]), dy = gpu.upload(r, [rows, outF]);
  const dX = await gpu.readF32(matmul(gpu, dy, wt, { M: rows, N: inF, K: outF }));
  const dW = await gpu.readF32(matmul(gpu, dy, xt, { M: outF, N: inF, K: rows, transA: true }));
  const eps = 1e-2; // loss is linear in each entry, so only f32 rounding limits the difference
  for (const i of [0, 5, 77, rows * inF - 1]) {
    const xp = x.slice(), xm = x.slice();
    xp[i] += eps, xm[i] -= eps;
    const fd = (await loss(xp, w) - await loss(xm, w)) / (2 * eps);
    assert.ok(Math.abs(fd - dX[i]) < 2e-2 * Math.max(1, Math.abs(fd)), `dX[${i}]: fd ${fd} vs ${dX[i]}`);
  }
  for (const i of [0, 3, 50, outF * inF - 1]) {
    const wp = w.slice(), wm = w.slice();
    wp[i] += eps, wm[i] -= eps;
    const fd = (await loss(x, wp) - await loss(x, wm)) / (2 * eps);
    assert.ok(Math.abs(fd - dW[i]) < 2e-2 * Math.max(1, Math.abs(fd)), `dW[${i}]: fd ${fd} vs ${dW[i]}`);
  }
});

Deno.test("matmul: bad shapes and arguments raise PeftError naming the problem", async () => {
  const gpu = await testGpu();
  const a = gpu.tensor([4, 4]), b = gpu.tensor([4, 4]);
  assert.throws(() => matmul(gpu, a, b, { M: 4, N: 4, K: 5 }), (e: unknown) => e instanceof PeftError && /A has 16 elements/.test(e.message));
  assert.throws(() => matmul(gpu, a, b, { M: 0, N: 4, K: 4 }), /M = 0 must be a positive integer/);
  assert.throws(() => matmul(gpu, a, b, { M: 4, N: 4, K: 4, accumulate: true }), /accumulate needs `out`/);
  assert.throws(() => matmul(gpu, a, b, { M: 4, N: 4, K: 4, out: a }), /must not alias/);
  assert.throws(() => matmul(gpu, a, b, { M: 4, N: 4, K: 4, bOffset: 1 }), /B has 16 elements/);
  a.release(), b.release();
});
