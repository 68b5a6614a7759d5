/** GPU 4-bit matmuls vs dequantize-then-matmul on the CPU (f64 sums), on awkward shapes. */
import assert from "node:assert/strict";
import { qmatmul, qmatmulBackward, qmatmulBackwardReference, qmatmulReference, uploadQuantized } from "../../src/kernels/nf4_matmul.ts";
import { quantize4bit, type QuantType4 } from "../../src/quant/mod.ts";
import { toF16, toF16Reference, toF32Reference } from "../../src/kernels/convert_f16.ts";
import { assertClose, randn, testGpu } from "../helpers.ts";

interface Case {
  M: number;
  N: number;
  K: number;
  type: QuantType4;
  blocksize: number;
  doubleQuant: boolean;
}
const CASES: Case[] = [
  { M: 1, N: 5, K: 96, type: "nf4", blocksize: 64, doubleQuant: false }, // decode (gemv), blocks straddle rows
  { M: 3, N: 17, K: 41, type: "fp4", blocksize: 32, doubleQuant: true }, // odd N*K: padded last byte
  { M: 8, N: 33, K: 130, type: "nf4", blocksize: 128, doubleQuant: true }, // largest gemv M
  { M: 19, N: 37, K: 67, type: "nf4", blocksize: 32, doubleQuant: false }, // tiled, partial tiles everywhere
  { M: 40, N: 70, K: 600, type: "nf4", blocksize: 64, doubleQuant: true }, // > 256 blocks: two nested blocks
  { M: 5, N: 67, K: 40, type: "fp4", blocksize: 32, doubleQuant: true }, // gemv8 (K % 8 == 0), blocks straddle rows, 9 column groups
  { M: 70, N: 65, K: 48, type: "nf4", blocksize: 32, doubleQuant: false }, // 2x2 tiles of 64, K a multiple of 16
];

for (const c of CASES) {
  const label = `M${c.M} N${c.N} K${c.K} ${c.type} bs${c.blocksize}${c.doubleQuant ? " dq" : ""}`;
  Deno.test(`qmatmul forward/backward vs CPU dequant-matmul: ${label}`, async () => {
    const gpu = await testGpu();
    const w = randn(c.N * c.K, c.N + c.K, 0.05);
    const st = quantize4bit(w, { type: c.type, blocksize: c.blocksize, doubleQuant: c.doubleQuant, shape: [c.N, c.K] });
    const qw = uploadQuantized(gpu, st, [c.N, c.K]);
    const xh = randn(c.M * c.K, 7 + c.M);
    const dyh = randn(c.M * c.N, 11 + c.M);
    const x = gpu.upload(xh, [c.M, c.K], "f32", "activations");
    const dy = gpu.upload(dyh, [c.M, c.N], "f32", "activations");

    const y = qmatmul(gpu, x, qw, { M: c.M });
    assertClose(await gpu.readF32(y), qmatmulReference(xh, st, [c.N, c.K], c.M), 1e-5, 1e-5, `${label} forward`);
    // alpha and accumulate: y = 0.5 * x·Wᵀ + y
    qmatmul(gpu, x, qw, { M: c.M, alpha: 0.5, accumulate: true, out: y });
    const ref = qmatmulReference(xh, st, [c.N, c.K], c.M, 1.5);
    assertClose(await gpu.readF32(y), ref, 1e-5, 1e-5, `${label} forward accumulate`);

    const dx = qmatmulBackward(gpu, dy, qw, { M: c.M, alpha: 2 });
    assertClose(await gpu.readF32(dx), qmatmulBackwardReference(dyh, st, [c.N, c.K], c.M, 2), 1e-5, 1e-5, `${label} backward`);

    // f16 activations (computeDtype "f16"): the same sums over the f16-rounded inputs
    if (gpu.info.features.f16) {
      const x16 = toF16(gpu, x), dy16 = toF16(gpu, dy);
      const xr = toF32Reference(toF16Reference(xh)), dyr = toF32Reference(toF16Reference(dyh));
      const y16 = qmatmul(gpu, x16, qw, { M: c.M });
      assertClose(await gpu.readF32(y16), qmatmulReference(xr, st, [c.N, c.K], c.M), 1e-5, 1e-5, `${label} forward f16`);
      const dx16 = qmatmulBackward(gpu, dy16, qw, { M: c.M, alpha: 2 });
      assertClose(await gpu.readF32(dx16), qmatmulBackwardReference(dyr, st, [c.N, c.K], c.M, 2), 1e-5, 1e-5, `${label} backward f16`);
      for (const t of [x16, dy16, y16, dx16]) t.release();
    }
    for (const t of [x, dy, y, dx]) t.release();
    qw.release();
  });
}

Deno.test("qmatmul: the tiled path for M > 8 agrees with the gemv path row by row", async () => {
  const gpu = await testGpu();
  const [N, K, M] = [23, 45, 9];
  const st = quantize4bit(randn(N * K, 5, 0.1), { blocksize: 32, doubleQuant: true });
  const qw = uploadQuantized(gpu, st, [N, K]);
  const xh = randn(M * K, 6);
  const x = gpu.upload(xh, [M, K], "f32", "activations");
  const tiled = await gpu.readF32(qmatmul(gpu, x, qw, { M }));
  const x1 = gpu.upload(xh.subarray(0, 8 * K), [8, K], "f32", "activations");
  const gemv = await gpu.readF32(qmatmul(gpu, x1, qw, { M: 8 }));
  assertClose(tiled.subarray(0, 8 * N), gemv, 1e-5, 1e-5, "tiled vs gemv");
  assert.throws(() => uploadQuantized(gpu, st, [N, K + 1], "blk.0.attn_q.weight"), /blk\.0\.attn_q\.weight: shape \[23,46\]/);
  qw.release();
  x.release();
  x1.release();
});

Deno.test("qmatmulBackward is the adjoint of qmatmul: <x·Wᵀ, dy> = <x, dy·W> (f32 and f16 activations)", async () => {
  // For a linear map the backward is exact to check this way (finite differences of a linear
  // function are exact too, but add rounding); tiled (M 19) and gemv (M 3, K % 8 == 0) paths.
  const gpu = await testGpu();
  for (const [M, N, K] of [[19, 37, 67], [3, 29, 64]]) {
    const st = quantize4bit(randn(N * K, M, 0.1), { blocksize: 32, doubleQuant: true });
    const qw = uploadQuantized(gpu, st, [N, K]);
    // values exact in f16, so the f16 kernels see the same operands
    const xh = toF32Reference(toF16Reference(randn(M * K, 2)));
    const dyh = toF32Reference(toF16Reference(randn(M * N, 3)));
    for (const dtype of gpu.info.features.f16 ? ["f32", "f16"] : ["f32"]) {
      const x32 = gpu.upload(xh, [M, K], "f32", "activations"), dy32 = gpu.upload(dyh, [M, N], "f32", "activations");
      const [x, dy] = dtype === "f16" ? [toF16(gpu, x32), toF16(gpu, dy32)] : [x32, dy32];
      const yt = qmatmul(gpu, x, qw, { M }), dxt = qmatmulBackward(gpu, dy, qw, { M });
      const y = await gpu.readF32(yt), dx = await gpu.readF32(dxt);
      for (const t of new Set([x32, dy32, x, dy, yt, dxt])) t.release();
      let a = 0, b = 0, scale = 0;
      for (let i = 0; i < y.length; i++) (a += y[i] * dyh[i]), (scale += Math.abs(y[i] * dyh[i]));
      for (let i = 0; i < dx.length; i++) b += xh[i] * dx[i];
      assert.ok(Math.abs(a - b) <= 1e-5 * scale, `M${M} N${N} K${K} ${dtype}: <y,dy> ${a} vs <x,dx> ${b}`);
    }
    qw.release();
  }
});
