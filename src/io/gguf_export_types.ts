/**
 * The storage types of a model exported as GGUF (`f32`, `f16`, `q8_0`, `q4_k`), and which ggml
 * type each tensor gets, as llama.cpp's own tools decide it:
 *  - 1-D tensors and norms stay F32 in every type (convert_hf_to_gguf.py; llama-quantize never
 *    quantizes a tensor with fewer than 2 dimensions or a name ending in `_norm.weight`);
 *  - `f16`: the other tensors as F16 (convert_hf_to_gguf.py --outtype f16);
 *  - `q8_0`: Q8_0 blocks of 32 (convert_hf_to_gguf.py --outtype q8_0); a tensor whose rows are
 *    not whole blocks is written F16, as that converter does when gguf.quants raises QuantError;
 *  - `q4_k`: Q4_K blocks of 256 for every quantizable tensor (llama-quantize --pure Q4_K_S, no
 *    mixture of types); rows that are not whole blocks follow llama-quantize's
 *    tensor_type_fallback: Q4_K -> Q5_0 (blocks of 32), and F16 when the rows are not whole
 *    Q5_0 blocks either. (stories260K, dim 64 and FFN 172: every matrix is Q5_0 but ffn_down, F16.)
 * The quantizers are ggml's reference ones (ggml_quantize.ts): the bytes llama-quantize writes
 * without an importance matrix.
 */
import { PeftError } from "../errors.ts";
import { f32ToF16Array } from "./bytes.ts";
import { quantizeGgml } from "./ggml_quantize.ts";
import { GGML, GGML_TYPES } from "./ggml_quants.ts";
import type { GgufWriteTensor } from "./gguf.ts";

export const GGUF_EXPORT_TYPES = ["f32", "f16", "q8_0", "q4_k"] as const;
export type GgufExportType = typeof GGUF_EXPORT_TYPES[number];

/** general.file_type (llama.h `enum llama_ftype`) of each export type. */
export const LLAMA_FILE_TYPE: Record<GgufExportType, number> = { f32: 0, f16: 1, q8_0: 7, q4_k: 14 /* MOSTLY_Q4_K_S */ };

/** The type asked for, before fallbacks. */
const TARGET: Record<GgufExportType, number> = { f32: GGML.F32, f16: GGML.F16, q8_0: GGML.Q8_0, q4_k: GGML.Q4_K };
/** Where a tensor falls back to when its rows are not whole blocks of the target (see the header). */
const FALLBACK: Partial<Record<number, number>> = { [GGML.Q8_0]: GGML.F16, [GGML.Q4_K]: GGML.Q5_0 };

export function isGgufExportType(v: unknown): v is GgufExportType {
  return typeof v === "string" && (GGUF_EXPORT_TYPES as readonly string[]).includes(v);
}

/** A tensor llama.cpp's tools would store in a quantized or half type: 2-D or more, a weight, not a norm. */
function quantizable(name: string, shape: readonly number[]): boolean {
  return shape.length >= 2 && name.endsWith("weight") && !name.endsWith("_norm.weight");
}

export interface TensorStorage {
  /** ggml type id (ggml_quants.ts GGML). */
  ggmlType: number;
  /** Set when the tensor could not take the asked type: why, and what it got instead ("rows of 172: … -> F16"). */
  fallback?: string;
}

/** The ggml type tensor `name` of PyTorch-order `shape` is stored in for export type `type`. */
export function tensorStorage(name: string, shape: readonly number[], type: GgufExportType): TensorStorage {
  if (!isGgufExportType(type)) throw new PeftError("BAD_PARAMETER", `GGUF export type must be one of ${GGUF_EXPORT_TYPES.join(", ")}, got ${JSON.stringify(type)}`);
  if (!quantizable(name, shape)) return { ggmlType: GGML.F32 };
  let ggmlType = TARGET[type];
  const cols = shape[shape.length - 1];
  const fits = (t: number) => cols % GGML_TYPES.get(t)!.blockSize === 0;
  if (fits(ggmlType)) return { ggmlType };
  const reasons = [];
  while (!fits(ggmlType)) {
    const next: number = FALLBACK[ggmlType] ?? GGML.F16;
    reasons.push(`${GGML_TYPES.get(ggmlType)!.name} needs rows of whole ${GGML_TYPES.get(ggmlType)!.blockSize}-element blocks`);
    ggmlType = next;
  }
  return { ggmlType, fallback: `rows of ${cols}: ${reasons.join(", ")} -> ${GGML_TYPES.get(ggmlType)!.name}` };
}

/** Tensor `name` (f32 values, PyTorch-order shape) encoded for a GGUF of export type `type`. */
export function encodeExportTensor(name: string, shape: number[], data: Float32Array, type: GgufExportType): GgufWriteTensor & TensorStorage {
  const s = tensorStorage(name, shape, type);
  if (s.ggmlType === GGML.F32) return { name, shape, data, ...s };
  if (s.ggmlType === GGML.F16) return { name, shape, data: f32ToF16Array(data), ...s };
  return { name, shape, data: quantizeGgml(s.ggmlType, data, shape[shape.length - 1], name), ...s };
}
