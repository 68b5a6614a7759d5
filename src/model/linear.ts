/**
 * A linear layer y = x·Wᵀ, plus the unmerged LoRA delta s·(x·Aᵀ)·Bᵀ when the active adapter
 * targets this weight. Keeping the delta unmerged lets many adapters share one base model.
 */
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import { matmul } from "../kernels/matmul.ts";

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
  W: Tensor,
  weightName: string,
  rows: number,
  out: number,
  inn: number,
  adapter?: ActiveAdapter,
): Tensor {
  const y = matmul(gpu, x, W, { M: rows, N: out, K: inn, transB: true });
  const lora = adapter?.layers.get(weightName);
  if (lora && adapter) {
    const ax = matmul(gpu, x, lora.A, { M: rows, N: lora.r, K: inn, transB: true });
    matmul(gpu, ax, lora.B, { M: rows, N: out, K: lora.r, transB: true, alpha: adapter.scale, accumulate: true, out: y });
    ax.release();
  }
  return y;
}
