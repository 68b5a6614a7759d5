import assert from "node:assert/strict";
import { matmulF16, matmulF16Reference, type MatmulF16Options } from "../../src/kernels/matmul_f16.ts";
import { toF16, toF16Reference } from "../../src/kernels/convert_f16.ts";
import { PeftError } from "../../src/errors.ts";
import type { Gpu } from "../../src/gpu/gpu.ts";
import { assertClose, randn, testGpu, MATMUL_LAYOUTS } from "../helpers.ts";

// Tolerance: the f16 inputs widen exactly and a product of two halves (11 significant bits each)
// is exact in f32, so the only error against the f64 reference is the f32 accumulation, as for
// the f32 matmul: inputs ~N(0,1) rounded to f16, K <= 65, well under 1e-4 + 1e-4 * max|C|.
const ATOL = 1e-4, RTOL = 1e-4;

async function checkCase(gpu: Gpu, o: MatmulF16Options, seed: number) {
  const aOff = o.aOffset ?? 0, bOff = o.bOffset ?? 0;
  const aHost = toF16Reference(randn(aOff + o.M * o.K + 3, seed)), bHost = toF16Reference(randn(bOff + o.K * o.N + 5, seed + 1));
  const cHost = randn(o.M * o.N, seed + 2);
  const a = gpu.upload(aHost, [aHost.length]), b = gpu.upload(bHost, [bHost.length]);
  const out = o.accumulate ? gpu.upload(cHost, [o.M, o.N]) : undefined;
  const c = matmulF16(gpu, a, b, { ...o, out });
  assert.equal(c.dtype, "f32");
  const got = await gpu.readF32(c);
  assertClose(got, matmulF16Reference(aHost, bHost, o, cHost), ATOL, RTOL, `matmulF16 ${JSON.stringify(o)}`);
  a.release(), b.release(), c.release();
}


Deno.test("matmulF16 tiled (M > 8): ragged shapes 9..65, all four layouts", async () => {
  const gpu = await testGpu();
  if (!gpu.info.features.f16) return assertUnsupported(gpu);
  const shapes: [number, number, number][] = [[9, 1, 1], [17, 3, 33], [33, 65, 17], [65, 17, 3], [65, 33, 65], [17, 65, 1]];
  let seed = 1;
  for (const [M, N, K] of shapes) for (const l of MATMUL_LAYOUTS) await checkCase(gpu, { M, N, K, ...l }, seed++);
});

Deno.test("matmulF16 gemv (M <= 8): M 1, 3, 8 with ragged N and K, all layouts", async () => {
  const gpu = await testGpu();
  if (!gpu.info.features.f16) return assertUnsupported(gpu);
  let seed = 100;
  for (const M of [1, 3, 8]) {
    for (const [N, K] of [[1, 1], [3, 65], [17, 33], [65, 17], [33, 3]]) for (const l of MATMUL_LAYOUTS) await checkCase(gpu, { M, N, K, ...l }, seed++);
  }
});

Deno.test("matmulF16: alpha, accumulate into f32 C and element offsets (tiled and gemv)", async () => {
  const gpu = await testGpu();
  if (!gpu.info.features.f16) return assertUnsupported(gpu);
  let seed = 300;
  for (const M of [3, 17]) {
    for (const l of MATMUL_LAYOUTS) {
      await checkCase(gpu, { M, N: 17, K: 33, ...l, alpha: -0.375, accumulate: true, aOffset: 7, bOffset: 13 }, seed++);
      await checkCase(gpu, { M, N: 33, K: 3, ...l, alpha: 2.5, aOffset: 1 }, seed++);
    }
  }
});

Deno.test("matmulF16: f16 subnormal and large inputs are widened exactly", async () => {
  const gpu = await testGpu();
  if (!gpu.info.features.f16) return assertUnsupported(gpu);
  // A holds subnormal halves (|x| < 2^-14) and B values up to 2^15: products are exact in f32,
  // and a device that flushed f16 subnormals would give 0.
  const M = 9, N = 3, K = 17;
  const aHost = new Uint16Array(M * K), bHost = new Uint16Array(K * N);
  for (let i = 0; i < aHost.length; i++) aHost[i] = ((i * 37) % 1023 + 1) | (i % 3 === 0 ? 0x8000 : 0);
  for (let i = 0; i < bHost.length; i++) bHost[i] = 0x7800 - (i % 5) * 0x400; // 2^15, 2^14, ...
  for (const [m, o] of [[M, { M, N, K }], [2, { M: 2, N, K }]] as const) {
    const a = gpu.upload(aHost, [aHost.length]), b = gpu.upload(bHost, [bHost.length]);
    const got = await gpu.readF32(matmulF16(gpu, a, b, o));
    const want = matmulF16Reference(aHost, bHost, o);
    assert.ok(want.some((v) => v !== 0));
    assertClose(got, want, 0, 1e-6, `subnormal inputs M=${m}`);
    a.release(), b.release();
  }
});

Deno.test("matmulF16 after toF16 on the GPU: linear layer y = x·Wᵀ", async () => {
  const gpu = await testGpu();
  if (!gpu.info.features.f16) return assertUnsupported(gpu);
  const rows = 17, inF = 33, outF = 65;
  const x = randn(rows * inF, 41), w = randn(outF * inF, 42, 0.1);
  const xt = gpu.upload(x, [rows, inF]), wt = gpu.upload(w, [outF, inF]);
  const xh = toF16(gpu, xt), wh = toF16(gpu, wt);
  const o = { M: rows, N: outF, K: inF, transB: true };
  const y = await gpu.readF32(matmulF16(gpu, xh, wh, o));
  assertClose(y, matmulF16Reference(toF16Reference(x), toF16Reference(w), o), ATOL, RTOL, "linear f16");
  xt.release(), wt.release(), xh.release(), wh.release();
});

Deno.test("matmulF16: bad shapes and arguments raise PeftError; no shader-f16 raises UNSUPPORTED", async () => {
  const gpu = await testGpu();
  assertUnsupported(withoutF16(gpu));
  if (!gpu.info.features.f16) return assertUnsupported(gpu);
  const a = gpu.tensor([4, 4], "f16"), b = gpu.tensor([4, 4], "f16"), f = gpu.tensor([4, 4]);
  assert.throws(() => matmulF16(gpu, a, b, { M: 4, N: 4, K: 5 }), (e: unknown) => e instanceof PeftError && /A has 16 elements/.test(e.message));
  assert.throws(() => matmulF16(gpu, a, b, { M: 0, N: 4, K: 4 }), /M = 0 must be a positive integer/);
  assert.throws(() => matmulF16(gpu, a, b, { M: 4, N: 4, K: 4, accumulate: true }), /accumulate needs `out`/);
  assert.throws(() => matmulF16(gpu, a, b, { M: 4, N: 4, K: 4, out: a }), /cannot hold f32/);
  assert.throws(() => matmulF16(gpu, a, b, { M: 4, N: 4, K: 4, bOffset: 1 }), /B has 16 elements/);
  assert.throws(() => matmulF16(gpu, f, b, { M: 4, N: 4, K: 4 }), /must be f16/);
  a.release(), b.release(), f.release();
});

/** The same Gpu seen through an info that says shader-f16 is off. */
function withoutF16(gpu: Gpu): Gpu {
  const info = { ...gpu.info, features: { ...gpu.info.features, f16: false } };
  return Object.create(gpu, { info: { value: info } });
}

function assertUnsupported(gpu: Gpu): void {
  const a = gpu.tensor([4, 4], "f16"), b = gpu.tensor([4, 4], "f16");
  assert.throws(
    () => matmulF16(gpu, a, b, { M: 4, N: 4, K: 4 }),
    (e: unknown) => e instanceof PeftError && e.code === "UNSUPPORTED" && /shader-f16/.test(e.message),
  );
  a.release(), b.release();
}
