/**
 * Model description shared by every loader (GGUF, HF directory) and the model, for every family
 * of families/family.ts. Weights are kept under GGUF tensor names with GGUF's row order for q/k:
 * for families with adjacent-pair RoPE (llama, mistral) loaders from HF checkpoints permute q/k
 * rows into that order (see permuteQK, reorderQK); NEOX families (qwen2, phi3) use HF's order in
 * GGUF too.
 */
import { PeftError } from "../errors.ts";
import { family } from "./families/family.ts";

export interface LlamaConfig {
  /** The family (families/family.ts): "llama", "mistral", "qwen2" or "phi3". */
  architecture: string;
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
  /** Sliding attention window (keys within window - 1 positions of the query); 0 or absent: none. */
  slidingWindow?: number;
  /**
   * Per-pair divisors of the rope angle ([ropeDim/2]): Llama 3.x rope scaling, llama.cpp's
   * rope_freqs.weight (GGUF) or computed from HF's rope_scaling type llama3 as llama.cpp's converter does.
   */
  ropeFreqFactors?: Float32Array;
  /** HF rope_scaling (type llama3) the factors came from, kept for HF export. */
  ropeScaling?: Llama3RopeScaling;
}

/** HF's rope_scaling {rope_type: "llama3", ...}. */
export interface Llama3RopeScaling {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/**
 * Llama 3 rope frequency factors (divisors of each pair's angle), exactly as llama.cpp's
 * convert_hf_to_gguf.py computes rope_freqs.weight (f32 torch arithmetic), equivalent to
 * transformers' _compute_llama3_parameters (inv_freq / factor = inv_freq_llama).
 */
export function llama3FreqFactors(s: Llama3RopeScaling, base: number, headDim: number): Float32Array {
  const f = Math.fround;
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) {
    // freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)), all f32
    const freq = f(1 / f(Math.pow(base, f(f(2 * i) / headDim))));
    const wavelen = f(f(2 * Math.PI) / freq);
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = s.factor;
    else {
      const smooth = f(f(f(s.originalMaxPositionEmbeddings / wavelen) - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor));
      out[i] = f(1 / f(f(f(1 - smooth) / s.factor) + smooth));
    }
  }
  return out;
}

/** HF PEFT module names (what users write in target_modules) -> GGUF tensor base names, every family's. */
export const HF_TO_GGUF_MODULE: Record<string, string> = {
  q_proj: "attn_q",
  k_proj: "attn_k",
  v_proj: "attn_v",
  o_proj: "attn_output",
  gate_proj: "ffn_gate",
  up_proj: "ffn_up",
  down_proj: "ffn_down",
  qkv_proj: "attn_qkv",
  gate_up_proj: "ffn_up",
};
/** GGUF base name -> HF module for llama's linears (phi3's ffn_up is gate_up_proj: use hfModuleOf). */
export const GGUF_TO_HF_MODULE: Record<string, string> = {
  attn_q: "q_proj", attn_k: "k_proj", attn_v: "v_proj", attn_output: "o_proj", ffn_gate: "gate_proj", ffn_up: "up_proj", ffn_down: "down_proj",
};
/** Parent module in HF's models (self_attn or mlp). */
export const HF_MODULE_PARENT: Record<string, string> = {
  q_proj: "self_attn",
  k_proj: "self_attn",
  v_proj: "self_attn",
  o_proj: "self_attn",
  gate_proj: "mlp",
  up_proj: "mlp",
  down_proj: "mlp",
  qkv_proj: "self_attn",
  gate_up_proj: "mlp",
};
/** llama's block linears (the default family). */
export const LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
/** Every family's block linears; an index here seeds per-module random draws (llama's seven first, unchanged). */
export const ALL_LINEAR_MODULES = [...LINEAR_MODULES, "qkv_proj", "gate_up_proj"];

/** The block linears of a model's family, by HF module name. */
export function linearModules(c: { architecture: string }): readonly string[] {
  return family(c).linears;
}

/** The HF module of a GGUF linear base name (attn_q, ffn_up, ...) in a model's family, or undefined. */
export function hfModuleOf(c: { architecture: string }, ggufBase: string): string | undefined {
  return linearModules(c).find((m) => HF_TO_GGUF_MODULE[m] === ggufBase);
}

/** Modules whose output rows are q or k head rows (rope acts on them). */
export function isQKModule(module: string): boolean {
  return module === "q_proj" || module === "k_proj";
}

/** GGUF names of a layer's q/k/v biases, when the family has them. */
export function biasName(c: { architecture: string }, module: string, layer: number): string | undefined {
  if (!family(c).qkvBias || !["q_proj", "k_proj", "v_proj"].includes(module)) return undefined;
  return `blk.${layer}.${HF_TO_GGUF_MODULE[module]}.bias`;
}

/** GGUF tensor name of a block linear weight, e.g. ("q_proj", 3) -> "blk.3.attn_q.weight". */
export function ggufLinearName(hfModule: string, layer: number): string {
  const g = HF_TO_GGUF_MODULE[hfModule];
  if (!g) throw new PeftError("UNKNOWN_MODULE", `unknown module ${hfModule} (known: ${ALL_LINEAR_MODULES.join(", ")})`);
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
    case "qkv_proj": return [(c.nHeads + 2 * c.nKvHeads) * c.headDim, c.dim];
    case "gate_up_proj": return [2 * c.hiddenDim, c.dim];
  }
  throw new PeftError("UNKNOWN_MODULE", `unknown module ${hfModule} (known: ${ALL_LINEAR_MODULES.join(", ")})`);
}

/**
 * permuteQK for a model: the identity for NEOX families (their GGUF rows are in HF order), else
 * the adjacent-pair permutation.
 */
export function reorderQK(
  c: LlamaConfig,
  data: Float32Array,
  rows: number,
  cols: number,
  direction: "hf_to_gguf" | "gguf_to_hf",
): Float32Array {
  return family(c).rope === "neox" ? data : permuteQK(data, rows, cols, c.headDim, direction);
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
