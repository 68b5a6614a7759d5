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
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import { f16ToF32 } from "../io/bytes.ts";
import { requireShaderF16 } from "./convert_f16.ts";
import { dispatchMatmul, type MatmulOptions, matmulReferenceOf } from "./matmul.ts";

export type MatmulF16Options = MatmulOptions;

/** C (f32) = alpha·op(A)·op(B) (+ C) with A, B f16 tensors; returns `out` or a new [M,N] f32 tensor. */
export function matmulF16(gpu: Gpu, a: Tensor, b: Tensor, o: MatmulF16Options): Tensor {
  requireShaderF16(gpu, "matmulF16");
  return dispatchMatmul(gpu, "matmulF16", "matmul_f16", "f16", a, b, o);
}

/**
 * CPU reference: `a`, `b` are half bit patterns (as uploaded / read back), widened exactly with
 * f16ToF32 and accumulated in f64; `c` is the f32 C added to when accumulate.
 */
export function matmulF16Reference(a: Uint16Array, b: Uint16Array, o: MatmulF16Options, c?: Float32Array): Float32Array {
  return matmulReferenceOf(
    "matmulF16",
    { length: a.length, value: (i) => f16ToF32(a[i]) },
    { length: b.length, value: (i) => f16ToF32(b[i]) },
    o,
    c,
  );
}
