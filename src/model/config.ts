/**
 * Llama-family model description shared by every loader (GGUF, HF directory) and the model.
 * Weights are kept under GGUF tensor names with GGUF's row order for q/k (adjacent-pair RoPE);
 * loaders from HF checkpoints permute q/k rows into that order (see permuteQK).
 */
import { PeftError } from "../errors.ts";

export interface LlamaConfig {
  architecture: string; // "llama"
  vocabSize: number;
  dim: number; // embedding_length
  hiddenDim: number; // feed_forward_length
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number; // dim / nHeads
  ropeDim: number; // rope.dimension_count (== headDim for llama)
  ropeBase: number; // rope.freq_base, default 10000
  normEps: number; // attention.layer_norm_rms_epsilon
  contextLength: number;
  /** True when output.weight is absent and the head reuses token_embd.weight. */
  tiedEmbeddings: boolean;
}

/** HF PEFT module names (what users write in target_modules) -> GGUF tensor base names. */
export const HF_TO_GGUF_MODULE: Record<string, string> = {
  q_proj: "attn_q",
  k_proj: "attn_k",
  v_proj: "attn_v",
  o_proj: "attn_output",
  gate_proj: "ffn_gate",
  up_proj: "ffn_up",
  down_proj: "ffn_down",
};
export const GGUF_TO_HF_MODULE: Record<string, string> = Object.fromEntries(
  Object.entries(HF_TO_GGUF_MODULE).map(([k, v]) => [v, k]),
);
/** Parent module in HF's llama (self_attn or mlp). */
export const HF_MODULE_PARENT: Record<string, string> = {
  q_proj: "self_attn",
  k_proj: "self_attn",
  v_proj: "self_attn",
  o_proj: "self_attn",
  gate_proj: "mlp",
  up_proj: "mlp",
  down_proj: "mlp",
};
export const LINEAR_MODULES = Object.keys(HF_TO_GGUF_MODULE);

/** GGUF tensor name of a block linear weight, e.g. ("q_proj", 3) -> "blk.3.attn_q.weight". */
export function ggufLinearName(hfModule: string, layer: number): string {
  const g = HF_TO_GGUF_MODULE[hfModule];
  if (!g) throw new PeftError("UNKNOWN_MODULE", `unknown module ${hfModule} (known: ${LINEAR_MODULES.join(", ")})`);
  return `blk.${layer}.${g}.weight`;
}

/** HF checkpoint name of a block linear weight, e.g. ("q_proj", 3) -> "model.layers.3.self_attn.q_proj.weight". */
export function hfLinearName(hfModule: string, layer: number): string {
  return `model.layers.${layer}.${HF_MODULE_PARENT[hfModule]}.${hfModule}.weight`;
}

/** [out, in] shape of a block linear weight. */
export function linearShape(c: LlamaConfig, hfModule: string): [number, number] {
  switch (hfModule) {
    case "q_proj": return [c.nHeads * c.headDim, c.dim];
    case "k_proj":
    case "v_proj": return [c.nKvHeads * c.headDim, c.dim];
    case "o_proj": return [c.dim, c.nHeads * c.headDim];
    case "gate_proj":
    case "up_proj": return [c.hiddenDim, c.dim];
    case "down_proj": return [c.dim, c.hiddenDim];
  }
  throw new PeftError("UNKNOWN_MODULE", `unknown module ${hfModule} (known: ${LINEAR_MODULES.join(", ")})`);
}

/**
 * Row permutation between HF's rotate-half q/k layout and GGUF's adjacent-pair layout
 * (llama.cpp convert_hf_to_gguf.py `permute`). Rows are grouped per head of `headDim`;
 * within a head, HF row s*(D/2)+j becomes GGUF row 2*j+s. Works on any [rows, cols] matrix
 * (weights, lora_B) and on vectors (cols = 1, e.g. DoRA magnitudes).
 */
export function permuteQK(
  data: Float32Array,
  rows: number,
  cols: number,
  headDim: number,
  direction: "hf_to_gguf" | "gguf_to_hf",
): Float32Array {
  if (rows % headDim !== 0 || headDim % 2 !== 0) {
    throw new PeftError("BAD_SHAPE", `q/k permutation: ${rows} rows are not a whole number of heads of ${headDim}`);
  }
  const out = new Float32Array(data.length);
  const half = headDim / 2;
  for (let h = 0; h < rows / headDim; h++) {
    for (let s = 0; s < 2; s++) {
      for (let j = 0; j < half; j++) {
        const hfRow = h * headDim + s * half + j;
        const ggRow = h * headDim + 2 * j + s;
        const [from, to] = direction === "hf_to_gguf" ? [hfRow, ggRow] : [ggRow, hfRow];
        out.set(data.subarray(from * cols, from * cols + cols), to * cols);
      }
    }
  }
  return out;
}
