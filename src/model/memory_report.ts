/**
 * Where a loaded model's GPU memory goes: base weights by class (4-bit, ggml, f16, f32) and the
 * allocator's other categories. All figures are bytes our allocator holds in GPU buffers.
 */
import type { Tensor } from "../gpu/gpu.ts";
import type { LlamaGpu } from "./llama.ts";

/** GPU bytes of the classes both the memory report and the training planner count. */
export interface ClassBytes {
  base_4bit: number;
  base_ggml: number;
  base_f16: number;
  base_f32: number;
  lora: number;
  gradients: number;
  optimizer: number;
  activations: number;
}

/**
 * GPU bytes by parameter class: base_4bit = NF4/FP4 linear weights (codes + block scales + shared
 * tables), base_ggml = GGUF tensors kept in their ggml block format (Q4_K, Q8_0, ..., BF16: the
 * file's bytes), base_f16 = f16 linear weights (computeDtype "f16"), base_f32 = every other base
 * weight, lora = adapter parameters (any method), then the trainer/inference categories.
 */
export interface MemoryReport extends ClassBytes, Record<string, number> {
  kv_cache: number;
  other: number;
}

/** Parameters and GPU bytes of one storage format. */
export interface FormatBytes {
  params: number;
  bytes: number;
  bitsPerParam: number;
}

/** Parameter counts and bits per parameter of the base weights. */
export interface ParameterReport {
  /** NF4/FP4 weights (QLoRA base). */
  quantizedParams: number;
  quantizedBytes: number;
  /** Including the shared tables (code maps, nested absmax) of the quantized weights. */
  quantizedBitsPerParam: number;
  /** GGUF tensors kept in their ggml format, all types together and by type name ("Q4_K": ...). */
  ggmlParams: number;
  ggmlBytes: number;
  ggmlTypes: Record<string, FormatBytes>;
  f32Params: number;
  f32Bytes: number;
  /** Linear weights stored as f16 (computeDtype "f16"). */
  f16Params: number;
  f16Bytes: number;
  quantization?: { type: string; blocksize: number; doubleQuant: boolean };
}

/** Bytes the allocator holds for a "weights" tensor (sized exactly, to 16 bytes). */
function weightAllocation(t: Tensor): number {
  return Math.max(16, Math.ceil(t.byteLength / 16) * 16);
}

export function parameterReport(llama: LlamaGpu): ParameterReport {
  let quantizedParams = 0, quantizedBytes = 0, ggmlParams = 0, ggmlBytes = 0, f32Params = 0, f32Bytes = 0, f16Params = 0, f16Bytes = 0;
  const ggmlTypes: Record<string, FormatBytes> = {};
  // Tensors shared by several weights (4-bit code tables) are counted once.
  const seen = new Set<Tensor>();
  for (const q of llama.quantized.values()) {
    const params = q.shape[0] * q.shape[1];
    let bytes = 0;
    for (const t of q.tensors()) {
      if (seen.has(t)) continue;
      seen.add(t);
      bytes += weightAllocation(t);
    }
    if (q.kind === "4bit") {
      quantizedParams += params;
      quantizedBytes += bytes;
    } else {
      ggmlParams += params;
      ggmlBytes += bytes;
      const f = ggmlTypes[q.format] ??= { params: 0, bytes: 0, bitsPerParam: 0 };
      f.params += params;
      f.bytes += bytes;
      f.bitsPerParam = (f.bytes * 8) / f.params;
    }
  }
  for (const t of llama.weights.values()) {
    if (t.dtype === "f16") {
      f16Params += t.size;
      f16Bytes += weightAllocation(t);
    } else {
      f32Params += t.size;
      f32Bytes += weightAllocation(t);
    }
  }
  const spec = llama.quantSpec;
  return {
    quantizedParams, quantizedBytes, quantizedBitsPerParam: quantizedParams ? (quantizedBytes * 8) / quantizedParams : 0,
    ggmlParams, ggmlBytes, ggmlTypes, f32Params, f32Bytes, f16Params, f16Bytes,
    quantization: spec ? { type: spec.type, blocksize: spec.blocksize, doubleQuant: spec.doubleQuant } : undefined,
  };
}

/**
 * How the base weights are stored, for log lines: "4-bit nf4 (double quant)", "GGUF Q4_K 4.500
 * bits/param, Q6_K 6.563 bits/param (kept quantized)", "f16" or "f32" (several joined by " + ").
 */
export function describeBaseStorage(p: ParameterReport): string {
  const parts: string[] = [];
  if (p.quantization) parts.push(`4-bit ${p.quantization.type}${p.quantization.doubleQuant ? " (double quant)" : ""}`);
  const ggml = Object.entries(p.ggmlTypes).map(([t, f]) => `${t} ${f.bitsPerParam.toFixed(3)} bits/param`);
  if (ggml.length) parts.push(`GGUF ${ggml.join(", ")} (kept quantized)`);
  if (p.f16Params) parts.push("f16");
  if (!parts.length) parts.push("f32");
  return parts.join(" + ");
}

/** GPU bytes by class; weights of other models on the same GPU count as "other". */
export function memoryReport(llama: LlamaGpu): MemoryReport {
  const cat = llama.gpu.memoryByCategory();
  const p = parameterReport(llama);
  return {
    base_4bit: p.quantizedBytes,
    base_ggml: p.ggmlBytes,
    base_f16: p.f16Bytes,
    base_f32: p.f32Bytes,
    lora: cat.lora ?? 0,
    gradients: cat.gradients ?? 0,
    optimizer: cat.optimizer ?? 0,
    activations: cat.activations ?? 0,
    kv_cache: cat.kv_cache ?? 0,
    other: (cat.other ?? 0) + Math.max(0, (cat.weights ?? 0) - p.quantizedBytes - p.ggmlBytes - p.f16Bytes - p.f32Bytes),
  };
}
