/**
 * f32 <-> f16 tensor conversion on the GPU (shaders/convert_f16.wgsl), groundwork for the
 * `computeDtype: "f16"` path (issue #6): weights/activations are narrowed once with `toF16` and
 * fed to `matmulF16`; `toF32` widens back.
 *
 * Both directions are bit-exact with the host conversions in src/io/bytes.ts (`f32ToF16`
 * round-to-nearest-even incl. subnormals, overflow to ±inf, ±0; `f16ToF32` exact), which the
 * CPU references below use. NaN stays NaN (payload not guaranteed to match).
 *
 * Gated on the device feature shader-f16 (`gpu.info.features.f16`); without it the launchers
 * throw PeftError("UNSUPPORTED"). (The shader is integer-only and would run without it.)
 */
import { check, PeftError } from "../errors.ts";
import { type Gpu, grid1d, type MemoryCategory, type Tensor } from "../gpu/gpu.ts";
import { f16ToF32, f32ToF16 } from "../io/bytes.ts";

/** Throws PeftError("UNSUPPORTED") unless the device has shader-f16. */
export function requireShaderF16(gpu: Gpu, what: string): void {
  if (!gpu.info.features.f16) {
    throw new PeftError("UNSUPPORTED", `${what}: this GPU device has no shader-f16 feature (f16 compute is unavailable; use f32)`);
  }
}

/** A new tensor of x's shape in dtype `to` (the other of f32 / f16), converted on the GPU. */
function convert(gpu: Gpu, x: Tensor, to: "f16" | "f32", category: MemoryCategory, what: string): Tensor {
  requireShaderF16(gpu, what);
  const from = to === "f16" ? "f32" : "f16";
  check(x.dtype === from, "KERNEL_ARGS", `${what}: input must be ${from} (got ${x.dtype})`);
  const out = gpu.tensor(x.shape, to, category);
  if (x.size > 0) {
    gpu.dispatch("convert_f16", `to_${to}`, { bindings: { src: x, dst: out }, params: [x.size], workgroups: grid1d(Math.ceil(x.size / 2), 64) });
  }
  return out;
}

/** f32 tensor -> new f16 tensor of the same shape (round-to-nearest-even). */
export function toF16(gpu: Gpu, x: Tensor, category: MemoryCategory = x.category): Tensor {
  return convert(gpu, x, "f16", category, "toF16");
}

/** f16 tensor -> new f32 tensor of the same shape (exact). */
export function toF32(gpu: Gpu, x: Tensor, category: MemoryCategory = x.category): Tensor {
  return convert(gpu, x, "f32", category, "toF32");
}

/** CPU reference for toF16: half bit patterns. */
export function toF16Reference(x: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToF16(x[i]);
  return out;
}

/** CPU reference for toF32. */
export function toF32Reference(h: ArrayLike<number>): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = f16ToF32(h[i]);
  return out;
}

/** Reads an f16 tensor's half bit patterns back to the host. */
export async function readF16Bits(gpu: Gpu, t: Tensor): Promise<Uint16Array> {
  check(t.dtype === "f16", "KERNEL_ARGS", `readF16Bits on a ${t.dtype} tensor`);
  const bytes = await gpu.read(t) as Uint8Array;
  return new Uint16Array(bytes.buffer, bytes.byteOffset, t.size);
}
