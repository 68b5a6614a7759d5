/**
 * Mixed-precision matrix multiply C[M,N] = alpha * op(A) · op(B) (+ C when accumulate) with A and
 * B stored as f16 and C (and the accumulation) in f32 (shaders/matmul_f16.wgsl), groundwork for
 * the `computeDtype: "f16"` path (issue #6): frozen base weights and activations in f16 halve
 * their memory and bandwidth while LoRA factors and master weights stay f32.
 *
 * Same API, layouts and dispatch plan as `matmul` (src/kernels/matmul.ts): 64x64 tiles for
 * M > 8, the gemv paths for M <= 8. Produce the f16 operands with `toF16` (src/kernels/convert_f16.ts)
 * or upload half bit patterns (`gpu.upload(Uint16Array, shape)`).
 *
 * Gated on shader-f16 (`gpu.info.features.f16`): without it `matmulF16` throws
 * PeftError("UNSUPPORTED"), the contract of the f16 compute path. The shader itself reads the
 * halves as packed u32 and widens them with integer ops (Dawn's GL backend has no shader-f16 and
 * every shader must compile there), so the gate could be lifted if f16 storage without f16
 * arithmetic is wanted on such devices.
 */
import { check } from "../errors.ts";
import { f32, type Gpu, grid1d, type Tensor } from "../gpu/gpu.ts";
import { f16ToF32 } from "../io/bytes.ts";
import { requireShaderF16 } from "./convert_f16.ts";
import { GEMV_MAX_ROWS, type MatmulOptions } from "./matmul.ts";

export type MatmulF16Options = MatmulOptions;

function validate(aSize: number, bSize: number, o: MatmulF16Options): void {
  for (const k of ["M", "N", "K"] as const) {
    check(Number.isInteger(o[k]) && o[k] > 0, "MATMUL_SHAPE", `matmulF16: ${k} = ${o[k]} must be a positive integer`);
  }
  const aOff = o.aOffset ?? 0, bOff = o.bOffset ?? 0;
  check(Number.isInteger(aOff) && aOff >= 0, "MATMUL_SHAPE", `matmulF16: aOffset = ${aOff} must be a non-negative integer`);
  check(Number.isInteger(bOff) && bOff >= 0, "MATMUL_SHAPE", `matmulF16: bOffset = ${bOff} must be a non-negative integer`);
  check(aSize >= aOff + o.M * o.K, "MATMUL_SHAPE", () => `matmulF16: A has ${aSize} elements, needs aOffset ${aOff} + M*K = ${o.M}*${o.K}`);
  check(bSize >= bOff + o.K * o.N, "MATMUL_SHAPE", () => `matmulF16: B has ${bSize} elements, needs bOffset ${bOff} + K*N = ${o.K}*${o.N}`);
  check(o.alpha === undefined || Number.isFinite(o.alpha), "MATMUL_ARGS", `matmulF16: alpha = ${o.alpha} must be finite`);
}

/** C (f32) = alpha·op(A)·op(B) (+ C) with A, B f16 tensors; returns `out` or a new [M,N] f32 tensor. */
export function matmulF16(gpu: Gpu, a: Tensor, b: Tensor, o: MatmulF16Options): Tensor {
  requireShaderF16(gpu, "matmulF16");
  validate(a.size, b.size, o);
  const { M, N, K } = o;
  check(a.dtype === "f16" && b.dtype === "f16", "MATMUL_ARGS", `matmulF16: A and B must be f16 (got ${a.dtype}, ${b.dtype})`);
  check(!o.accumulate || o.out, "MATMUL_ARGS", "matmulF16: accumulate needs `out` (the C to add to)");
  if (o.out) {
    check(o.out.dtype === "f32" && o.out.size >= M * N, "MATMUL_SHAPE", `matmulF16: out [${o.out.shape}] ${o.out.dtype} cannot hold f32 [${M},${N}]`);
    check(o.out.buffer !== a.buffer && o.out.buffer !== b.buffer, "MATMUL_ARGS", "matmulF16: out must not alias A or B");
  }
  const c = o.out ?? gpu.tensor([M, N]);
  const params = [M, N, K, o.aOffset ?? 0, o.bOffset ?? 0, o.accumulate ? 1 : 0, f32(o.alpha ?? 1)];
  const bindings = { a, b, c };
  const constants: Record<string, number> = { TRANS_A: o.transA ? 1 : 0, TRANS_B: o.transB ? 1 : 0 };
  if (M <= GEMV_MAX_ROWS) {
    constants.ROWS = M;
    if (o.transB) gpu.dispatch("matmul_f16", "gemv_t", { bindings, params, constants, workgroups: grid1d(N, 32) });
    else gpu.dispatch("matmul_f16", "gemv_n", { bindings, params, constants, workgroups: grid1d(N, 64) });
  } else {
    check(Math.ceil(N / 64) <= 65535 && Math.ceil(M / 64) <= 65535, "MATMUL_SHAPE", `matmulF16: [${M},${N}] is too large for one dispatch`);
    gpu.dispatch("matmul_f16", "tiled", { bindings, params, constants, workgroups: [Math.ceil(N / 64), Math.ceil(M / 64)] });
  }
  return c;
}

/**
 * CPU reference: `a`, `b` are half bit patterns (as uploaded / read back), widened exactly with
 * f16ToF32 and accumulated in f64; `c` is the f32 C added to when accumulate.
 */
export function matmulF16Reference(a: Uint16Array, b: Uint16Array, o: MatmulF16Options, c?: Float32Array): Float32Array {
  validate(a.length, b.length, o);
  const { M, N, K } = o;
  const aOff = o.aOffset ?? 0, bOff = o.bOffset ?? 0, alpha = o.alpha ?? 1;
  const out = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const av = f16ToF32(o.transA ? a[aOff + k * M + m] : a[aOff + m * K + k]);
        const bv = f16ToF32(o.transB ? b[bOff + n * K + k] : b[bOff + k * N + n]);
        s += av * bv;
      }
      out[m * N + n] = alpha * s + (o.accumulate && c ? c[m * N + n] : 0);
    }
  }
  return out;
}
