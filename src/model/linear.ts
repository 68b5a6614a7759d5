/**
 * A linear layer y = x·Wᵀ, plus the unmerged LoRA delta s·(x·Aᵀ)·Bᵀ when the active adapter
 * targets this weight. Keeping the delta unmerged lets many adapters share one base model.
 * W is an f32 or f16 tensor or a 4-bit quantized weight (QLoRA base), dequantized on the fly.
 */
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import { matmul } from "../kernels/matmul.ts";
import { PeftError } from "../errors.ts";
import { type ComputeDtype, type LinearWeight, linearMatmul, weightShape } from "./quantized.ts";

/** LoRA factors of one linear on the GPU: A [r, in], B [out, r]. */
export interface LoraFactors {
  A: Tensor;
  B: Tensor;
  r: number;
}

/** What the forward pass needs to know of an adapter: scale and factors per GGUF weight name. */
export interface ActiveAdapter {
  scale: number;
  layers: Map<string, LoraFactors>;
}

export function linear(
  gpu: Gpu,
  x: Tensor,
  W: LinearWeight,
  weightName: string,
  rows: number,
  out: number,
  inn: number,
  adapter?: ActiveAdapter,
  /** Add the result into this tensor (e.g. the residual stream) instead of a new one: saves a dispatch. */
  into?: Tensor,
  /** Operand precision of the base matmul (LoRA factors and their products stay f32). */
  compute: ComputeDtype = "f32",
): Tensor {
  const [wo, wi] = weightShape(W);
  if (wo !== out || wi !== inn) throw new PeftError("BAD_SHAPE", `${weightName}: weight is [${wo}, ${wi}], the layer needs [${out}, ${inn}]`);
  const y = linearMatmul(gpu, x, W, { M: rows, accumulate: !!into, out: into, compute });
  const lora = adapter?.layers.get(weightName);
  if (lora && adapter) {
    const ax = matmul(gpu, x, lora.A, { M: rows, N: lora.r, K: inn, transB: true });
    matmul(gpu, ax, lora.B, { M: rows, N: out, K: lora.r, transB: true, alpha: adapter.scale, accumulate: true, out: y });
    ax.release();
  }
  return y;
}
