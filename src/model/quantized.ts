/**
 * Linear weights as the model multiplies them: a frozen base weight is an f32 `Tensor` [out, in],
 * an f16 `Tensor` (computeDtype "f16": half the memory; the activations are narrowed to f16 for
 * the product, sums and outputs stay f32) or a `QuantizedLinear`: a weight kept compressed on the
 * GPU and dequantized on the fly by its kernels, so no resident f32 copy of it ever exists. Two
 * kinds implement it:
 *   - "4bit" (quantized_4bit.ts): NF4/FP4 codes + block scales made at load (QLoRA's base);
 *   - "ggml" (quantized_ggml.ts): a GGUF tensor kept in its own block format (Q8_0, Q4_K, ... BF16).
 *
 *   forward   y  = alpha · x · Wᵀ   -> matmul(transB) | matmulF16(transB) | W.matmul
 *   backward  dx = alpha · dy · W    -> matmul          | matmulF16          | W.matmulBackward
 *
 * Training through a quantized base is QLoRA's: the backward multiplies by the same dequantized
 * values the forward used (dx = dy · dequant(W)); W itself gets no gradient.
 */
import { PeftError } from "../errors.ts";
import { type Gpu, Tensor } from "../gpu/gpu.ts";
import { matmul } from "../kernels/matmul.ts";
import { matmulF16 } from "../kernels/matmul_f16.ts";
import { readF16Bits, toF16 } from "../kernels/convert_f16.ts";
import { f16ToF32Array } from "../io/bytes.ts";
import type { QuantType4 } from "../quant/mod.ts";

export type ComputeDtype = "f32" | "f16";

export interface QuantMatmulOptions {
  M: number;
  alpha?: number;
  accumulate?: boolean;
  out?: Tensor;
}

/** A frozen weight [out, in] kept compressed on the GPU; its kernels dequantize it as they read it. */
export interface QuantizedLinear {
  /** "4bit": quantized to NF4/FP4 at load (QLoRA); "ggml": a GGUF tensor in its own block format. */
  readonly kind: "4bit" | "ggml";
  /** "nf4", "fp4", or the ggml type name ("Q4_K", "Q8_0", "BF16", ...). */
  readonly format: string;
  /** [out, in] */
  readonly shape: [number, number];
  /** The kernels read f16 activations (computeDtype "f16"); otherwise activations stay f32. */
  readonly f16Activations: boolean;
  /** The GPU tensors holding it; a tensor shared by several weights (code tables) is listed by each. */
  tensors(): Tensor[];
  /** y [M, out] = alpha · x [M, in] · dequant(W)ᵀ (+ out when accumulate). */
  matmul(gpu: Gpu, x: Tensor, o: QuantMatmulOptions): Tensor;
  /** dx [M, in] = alpha · dy [M, out] · dequant(W) (+ out when accumulate). */
  matmulBackward(gpu: Gpu, dy: Tensor, o: QuantMatmulOptions): Tensor;
  /** Rows `ids` (u32) of W as f32 [ids, in]: W as an embedding table. Absent when the kind has no row lookup. */
  embedding?(gpu: Gpu, ids: Tensor): Tensor;
  /** The f32 values the kernels compute with, on the host. */
  dequantize(): Promise<Float32Array>;
  /** `values` [out, in] in this weight's format, uploaded (merging with requantize). */
  requantize(values: Float32Array, name: string): QuantizedLinear;
  release(): void;
}

export type LinearWeight = Tensor | QuantizedLinear;

export interface QuantizeSpec {
  type: QuantType4;
  /** Values per absmax block (power of two, 32..4096; default 64 as in bitsandbytes). */
  blocksize: number;
  doubleQuant: boolean;
  /** Also quantize an untied output head (default false: the head stays f32, as PEFT/bnb keep lm_head). */
  head: boolean;
}

export function isQuantized(w: LinearWeight): w is QuantizedLinear {
  return !(w instanceof Tensor);
}

export function weightShape(w: LinearWeight): [number, number] {
  return isQuantized(w) ? w.shape : [w.shape[0], w.shape[1]];
}

/** How a base weight is stored: "f32", "f16", "nf4", "fp4" or a ggml type name. */
export function weightFormat(w: LinearWeight): string {
  return isQuantized(w) ? w.format : w.dtype;
}

export interface LinearMatmulOptions extends QuantMatmulOptions {
  /**
   * "f16": the activation operand (x, or dy in the backward) is narrowed to f16 for a 4-bit W
   * (computeDtype "f16"). An f16 W always computes with f16 activations. Sums and outputs stay f32.
   */
  compute?: ComputeDtype;
}

/** The dtype the activations of a matmul with W are narrowed to. */
function operandDtype(W: LinearWeight, compute: ComputeDtype | undefined): ComputeDtype {
  if (isQuantized(W)) return W.f16Activations ? compute ?? "f32" : "f32";
  return W.dtype === "f16" ? "f16" : "f32";
}

/** Runs `fn` on x in the operand dtype (a temporary f16 copy when narrowing). */
function withOperand<T>(gpu: Gpu, x: Tensor, dtype: ComputeDtype, fn: (a: Tensor) => T): T {
  if (x.dtype === dtype) return fn(x);
  const a = toF16(gpu, x, "activations");
  try {
    return fn(a);
  } finally {
    a.release();
  }
}

/** y [M, out] = alpha · x [M, in] · Wᵀ (+ out when accumulate). */
export function linearMatmul(gpu: Gpu, x: Tensor, W: LinearWeight, o: LinearMatmulOptions): Tensor {
  return withOperand(gpu, x, operandDtype(W, o.compute), (a) => {
    if (isQuantized(W)) return W.matmul(gpu, a, o);
    const [N, K] = W.shape;
    const mo = { M: o.M, N, K, transB: true, alpha: o.alpha, accumulate: o.accumulate, out: o.out };
    return W.dtype === "f16" ? matmulF16(gpu, a, W, mo) : matmul(gpu, a, W, mo);
  });
}

/** dx [M, in] = alpha · dy [M, out] · W (+ out when accumulate). */
export function linearMatmulBackward(gpu: Gpu, dy: Tensor, W: LinearWeight, o: LinearMatmulOptions): Tensor {
  return withOperand(gpu, dy, operandDtype(W, o.compute), (a) => {
    if (isQuantized(W)) return W.matmulBackward(gpu, a, o);
    const [N, K] = W.shape;
    const mo = { M: o.M, N: K, K: N, alpha: o.alpha, accumulate: o.accumulate, out: o.out };
    return W.dtype === "f16" ? matmulF16(gpu, a, W, mo) : matmul(gpu, a, W, mo);
  });
}

/** A base weight's values as f32 on the host: dequantized, widened (f16) or as stored. */
export async function readWeightF32(gpu: Gpu, w: LinearWeight): Promise<Float32Array> {
  if (isQuantized(w)) return await w.dequantize();
  if (w.dtype === "f16") return f16ToF32Array(await readF16Bits(gpu, w));
  return await gpu.readF32(w);
}

/** The f32 values a quantized weight's kernels compute with (for 4-bit: bit-identical to bnb's dequantize_4bit). */
export async function dequantizeWeight(_gpu: Gpu, w: QuantizedLinear): Promise<Float32Array> {
  return await w.dequantize();
}

export function resolveQuantizeSpec(o: { quantize?: string; blocksize?: number; doubleQuant?: boolean; quantizeHead?: boolean }): QuantizeSpec | undefined {
  if (o.quantize === undefined || o.quantize === "none") {
    if (o.blocksize !== undefined || o.doubleQuant || o.quantizeHead) {
      throw new PeftError("BAD_PARAMETER", "blocksize / doubleQuant / quantizeHead need quantize: \"nf4\" or \"fp4\"");
    }
    return undefined;
  }
  if (o.quantize !== "nf4" && o.quantize !== "fp4") {
    throw new PeftError("BAD_PARAMETER", `quantize must be "nf4" or "fp4", got ${JSON.stringify(o.quantize)}`);
  }
  return { type: o.quantize, blocksize: o.blocksize ?? 64, doubleQuant: o.doubleQuant ?? false, head: o.quantizeHead ?? false };
}
