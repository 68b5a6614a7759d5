/**
 * Linear weights that may be 4-bit (QLoRA) or f16: a frozen base weight is an f32 `Tensor`
 * [out, in], an f16 `Tensor` (computeDtype "f16": half the memory; the activations are narrowed to
 * f16 for the product, sums and outputs stay f32) or a `QuantizedWeight` (NF4/FP4 codes + block
 * scales, dequantized on the fly by the 4-bit matmul kernels; no resident f32 copy of W ever
 * exists on the GPU).
 *
 *   forward   y  = alpha · x · Wᵀ   -> matmul(transB) | matmulF16(transB) | qmatmul
 *   backward  dx = alpha · dy · W    -> matmul          | matmulF16          | qmatmulBackward
 *
 * Quantization runs on the flattened [out, in] weight in GGUF row order (q/k rows stay in GGUF's
 * adjacent-pair order). Blocks are taken over the flat index, so when `in % blocksize != 0` a block
 * straddles two rows; the kernels index codes and scales by flat index, so that is exact here.
 * (A row permutation such as GGUF -> HF q/k order moves whole blocks only when in % blocksize == 0;
 * otherwise exporting to HF order must dequantize, permute and re-quantize.)
 */
import { PeftError } from "../errors.ts";
import { type Gpu, Tensor } from "../gpu/gpu.ts";
import { matmul } from "../kernels/matmul.ts";
import { matmulF16 } from "../kernels/matmul_f16.ts";
import { readF16Bits, toF16 } from "../kernels/convert_f16.ts";
import { f16ToF32Array } from "../io/bytes.ts";
import { qmatmul, qmatmulBackward, type QuantizedWeight } from "../kernels/nf4_matmul.ts";
import { dequantize4bit, NESTED_BLOCKSIZE, type QuantState4bit, type QuantType4 } from "../quant/mod.ts";

export type LinearWeight = Tensor | QuantizedWeight;

export interface QuantizeSpec {
  type: QuantType4;
  /** Values per absmax block (power of two, 32..4096; default 64 as in bitsandbytes). */
  blocksize: number;
  doubleQuant: boolean;
  /** Also quantize an untied output head (default false: the head stays f32, as PEFT/bnb keep lm_head). */
  head: boolean;
}

export function isQuantized(w: LinearWeight): w is QuantizedWeight {
  return !(w instanceof Tensor);
}

export function weightShape(w: LinearWeight): [number, number] {
  return isQuantized(w) ? w.shape : [w.shape[0], w.shape[1]];
}

export interface LinearMatmulOptions {
  M: number;
  alpha?: number;
  accumulate?: boolean;
  out?: Tensor;
  /**
   * "f16": the activation operand (x, or dy in the backward) is narrowed to f16 for a 4-bit W
   * (computeDtype "f16"). An f16 W always computes with f16 activations. Sums and outputs stay f32.
   */
  compute?: ComputeDtype;
}

export type ComputeDtype = "f32" | "f16";

/** The dtype the activations of a matmul with W are narrowed to. */
function operandDtype(W: LinearWeight, compute: ComputeDtype | undefined): ComputeDtype {
  if (isQuantized(W)) return compute ?? "f32";
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
    if (isQuantized(W)) return qmatmul(gpu, a, W, o);
    const [N, K] = W.shape;
    const mo = { M: o.M, N, K, transB: true, alpha: o.alpha, accumulate: o.accumulate, out: o.out };
    return W.dtype === "f16" ? matmulF16(gpu, a, W, mo) : matmul(gpu, a, W, mo);
  });
}

/** dx [M, in] = alpha · dy [M, out] · W (+ out when accumulate). */
export function linearMatmulBackward(gpu: Gpu, dy: Tensor, W: LinearWeight, o: LinearMatmulOptions): Tensor {
  return withOperand(gpu, dy, operandDtype(W, o.compute), (a) => {
    if (isQuantized(W)) return qmatmulBackward(gpu, a, W, o);
    const [N, K] = W.shape;
    const mo = { M: o.M, N: K, K: N, alpha: o.alpha, accumulate: o.accumulate, out: o.out };
    return W.dtype === "f16" ? matmulF16(gpu, a, W, mo) : matmul(gpu, a, W, mo);
  });
}

/** Bytes our allocator holds for a linear weight's own buffers (quantized: codes + scales). */
export function linearWeightBytes(w: LinearWeight): number {
  return isQuantized(w) ? w.codes.byteLength + w.absmax.byteLength : w.byteLength;
}

/** A base weight's values as f32 on the host: dequantized (4-bit), widened (f16) or as stored. */
export async function readWeightF32(gpu: Gpu, w: LinearWeight): Promise<Float32Array> {
  if (isQuantized(w)) return await dequantizeWeight(gpu, w);
  if (w.dtype === "f16") return f16ToF32Array(await readF16Bits(gpu, w));
  return await gpu.readF32(w);
}

/**
 * Reads a quantized weight back from the GPU as a bitsandbytes-style quant state (codes, scales
 * and tables exactly as uploaded), e.g. to dequantize it for merging or export.
 */
export async function readQuantState(gpu: Gpu, qw: QuantizedWeight): Promise<QuantState4bit> {
  const [out, inn] = qw.shape;
  const n = out * inn;
  const blocks = Math.ceil(n / qw.blocksize);
  const packed = (await gpu.read(qw.codes, Math.ceil(n / 2))) as Uint8Array;
  const tables = await gpu.readF32(qw.tables);
  const code = tables.slice(qw.codeOffset, qw.codeOffset + 16);
  const state: QuantState4bit = {
    type: qw.type, blocksize: qw.blocksize, n, shape: [out, inn], dtype: "float32", packed: new Uint8Array(packed), code,
    absmax: null, nested: null,
  };
  if (qw.doubleQuant) {
    const codes = new Uint8Array((await gpu.read(qw.absmax, blocks)) as Uint8Array);
    const nb = Math.ceil(blocks / NESTED_BLOCKSIZE);
    state.nested = {
      codes,
      absmax: tables.slice(qw.nestedAbsmaxOffset, qw.nestedAbsmaxOffset + nb),
      offset: tables[qw.offsetIndex],
      blocksize: NESTED_BLOCKSIZE,
      map: tables.slice(qw.nestedMapOffset, qw.nestedMapOffset + 256),
    };
  } else {
    state.absmax = await gpu.readF32(qw.absmax, blocks);
  }
  return state;
}

/** The f32 values the kernels compute with (bit-identical to bnb's dequantize_4bit). */
export async function dequantizeWeight(gpu: Gpu, qw: QuantizedWeight): Promise<Float32Array> {
  return dequantize4bit(await readQuantState(gpu, qw));
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
