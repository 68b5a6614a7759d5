/**
 * LoRA adapters as GGUF, the format llama.cpp loads at runtime (`llama-cli --lora x.gguf`,
 * llama_adapter_lora_init) and its convert_lora_to_gguf.py writes:
 *   general.architecture  the base model's (llama.cpp refuses an adapter of another architecture)
 *   general.type = "adapter", adapter.type = "lora", adapter.lora.alpha (FLOAT32)
 *   <base weight name>.lora_a  A, PyTorch shape [r, in]  (GGUF dims [in, r])
 *   <base weight name>.lora_b  B, PyTorch shape [out, r] (GGUF dims [r, out]), rows in the base
 *                              weight's GGUF order (q/k rows permuted as the base's are)
 * llama.cpp adds scale·B·(A·x) with scale = alpha / r (r read from lora_b), or 1 when alpha is 0.
 */
import { PeftError } from "../errors.ts";
import { encodeGGUF, type GgufMetaEntry, GgufType, writeGGUF, type GgufWriteTensor } from "./gguf.ts";

export interface LoraGgufPair {
  /** The base tensor the pair adapts, e.g. blk.0.attn_q.weight. */
  weight: string;
  r: number;
  inFeatures: number;
  outFeatures: number;
  /** [r, in], row-major. */
  a: Float32Array;
  /** [out, r], row-major, rows in the base weight's GGUF order. */
  b: Float32Array;
}

export interface LoraGguf {
  /** general.architecture of the base model. */
  architecture: string;
  /** adapter.lora.alpha: llama.cpp scales B·A by alpha / r. Must not be 0 (llama.cpp reads 0 as "scale 1"). */
  alpha: number;
  /** general.name (optional). */
  name?: string;
  pairs: LoraGgufPair[];
}

/** Metadata and tensors of a LoRA GGUF, checked: `what` names the adapter in errors. */
export function loraGgufContents(input: LoraGguf, what: string): { metadata: Map<string, GgufMetaEntry>; tensors: GgufWriteTensor[] } {
  const bad = (msg: string) => new PeftError("LORA_GGUF_INVALID", `${what}: ${msg}`);
  if (!input.architecture) throw bad("general.architecture is empty");
  if (!Number.isFinite(input.alpha) || input.alpha === 0) {
    throw bad(`adapter.lora.alpha must be a finite non-zero number, got ${input.alpha} (llama.cpp reads 0 as "no scaling")`);
  }
  if (!input.pairs.length) throw bad("no lora_a/lora_b pairs to write");
  const seen = new Set<string>();
  const tensors: GgufWriteTensor[] = [];
  for (const p of input.pairs) {
    if (!p.weight.endsWith(".weight")) throw bad(`base tensor name ${p.weight} must end in .weight`);
    if (seen.has(p.weight)) throw bad(`two pairs for ${p.weight}`);
    seen.add(p.weight);
    if (p.a.length !== p.r * p.inFeatures) throw bad(`${p.weight}.lora_a has ${p.a.length} values, [r ${p.r}, in ${p.inFeatures}] needs ${p.r * p.inFeatures}`);
    if (p.b.length !== p.outFeatures * p.r) throw bad(`${p.weight}.lora_b has ${p.b.length} values, [out ${p.outFeatures}, r ${p.r}] needs ${p.outFeatures * p.r}`);
    tensors.push({ name: `${p.weight}.lora_a`, shape: [p.r, p.inFeatures], data: p.a });
    tensors.push({ name: `${p.weight}.lora_b`, shape: [p.outFeatures, p.r], data: p.b });
  }
  const str = (value: string): GgufMetaEntry => ({ type: GgufType.STRING, value });
  const metadata = new Map<string, GgufMetaEntry>([
    ["general.architecture", str(input.architecture)],
    ["general.type", str("adapter")],
    ...(input.name ? [["general.name", str(input.name)] as [string, GgufMetaEntry]] : []),
    ["general.file_type", { type: GgufType.UINT32, value: 0 }], // ALL_F32
    ["adapter.type", str("lora")],
    ["adapter.lora.alpha", { type: GgufType.FLOAT32, value: input.alpha }],
  ]);
  return { metadata, tensors };
}

/** Writes a LoRA adapter GGUF (f32 tensors) atomically. */
export async function writeLoraGguf(path: string, input: LoraGguf): Promise<void> {
  await writeGGUF(path, loraGgufContents(input, path));
}

/** The same file's bytes (for a browser download). */
export function encodeLoraGguf(input: LoraGguf, what: string): Uint8Array {
  const chunks = encodeGGUF(loraGgufContents(input, what));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.byteLength;
  }
  return out;
}
