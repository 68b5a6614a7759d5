/**
 * Tiny (or bench-sized) random-weight models of each family (src/model/families/family.ts),
 * written as a GGUF with llama.cpp's names and metadata (our writeGGUF) and as a Hugging Face
 * directory with transformers' names and config.json keys. The weights are a pure function of
 * (spec, tensor name, index) — an integer hash that scripts/dev/make_family_fixtures.py computes
 * identically — so the PyTorch fixtures need no committed weights. Tokenizer: stories260K's.
 *
 * HF layout is the source: the GGUF gets q/k rows permuted for adjacent-pair families (llama,
 * mistral; llama.cpp's convert_hf_to_gguf.py permute), unpermuted for NEOX ones (qwen2, phi3),
 * and Llama 3's rope_freqs.weight computed from rope_scaling as the converter does.
 */
import { mkdir, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufType, type GgufMetaEntry, type GgufWriteTensor, writeGGUF } from "../../src/io/gguf.ts";
import { writeSafetensors } from "../../src/io/safetensors.ts";
import { llama3FreqFactors, permuteQK } from "../../src/model/config.ts";
import { hfToGgufName } from "../../src/model/hf_weights.ts";
import { STORIES260K, storiesTokenizerMeta } from "./random_llama.ts";
import { readGGUF } from "../../src/io/gguf.ts";
import { spmTokenizerJson } from "../../tests/tokenizer/spm_json_fixture.ts";

export interface FamilySpec {
  name: string;
  family: "llama" | "mistral" | "qwen2" | "phi3";
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  hiddenDim: number;
  vocab: number;
  contextLength: number;
  ropeBase: number;
  normEps: number;
  tied: boolean;
  /** 0: none. */
  slidingWindow: number;
  /** Rotary dims per head (< head dim: phi3's partial rotation). */
  ropeDim: number;
  llama3: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number } | null;
  seed: number;
  /** Multiplies every non-norm tensor (bench models: small weights as trained models have); default 1. */
  weightScale?: number;
}

/** A qwen2-shaped random model of ~25M non-embedding parameters (Qwen2.5's GQA 4:1, biases, tied head, theta 1e6). */
export const QWEN2_25M: FamilySpec = {
  name: "qwen2-25m", family: "qwen2", dim: 512, nLayers: 8, nHeads: 8, nKvHeads: 2, hiddenDim: 1536, vocab: 32000, contextLength: 2048,
  ropeBase: 1000000, normEps: 1e-6, tied: true, slidingWindow: 0, ropeDim: 64, llama3: null, seed: 1, weightScale: 0.08,
};

/** Non-embedding and total parameter counts of a spec. */
export function familyParameterCounts(s: FamilySpec): { total: number; nonEmbedding: number } {
  let total = 0, emb = 0;
  for (const [name, t] of hfTensorShapes(s)) {
    const n = t.reduce((a, b) => a * b, 1);
    total += n;
    if (name === "model.embed_tokens.weight" || name === "lm_head.weight") emb += n;
  }
  return { total, nonEmbedding: total - emb };
}

export interface HostTensorF32 {
  shape: number[];
  data: Float32Array;
}

const headDim = (s: FamilySpec) => s.dim / s.nHeads;

/** FNV-1a over the UTF-8 bytes of s. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

/** A 32-bit integer mix (the "lowbias32" hash). */
function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** Value i of tensor `name`: offset + scale·u, u uniform in [-1, 1) from the hash (f64, then rounded to f32). */
function hashTensor(seed: number, name: string, n: number, scale: number, offset: number): Float32Array {
  const h = fnv1a(`${seed}:${name}`);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const x = mix32((h ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
    out[i] = offset + scale * (((x >>> 8) / 16777216) * 2 - 1);
  }
  return out;
}

/** Scale and offset of a tensor's values by its HF name (norms near 1, biases larger than weights). */
function valueRange(name: string): [number, number] {
  if (name.endsWith("norm.weight")) return [0.25, 1];
  if (name.endsWith(".bias")) return [0.5, 0];
  if (name === "model.embed_tokens.weight") return [1, 0];
  return [0.25, 0];
}

/** The model's tensor names and shapes in HF naming. */
function hfTensorShapes(s: FamilySpec): [string, number[]][] {
  const hd = headDim(s), q = s.nHeads * hd, kv = s.nKvHeads * hd;
  const shapes: [string, number[]][] = [["model.embed_tokens.weight", [s.vocab, s.dim]]];
  for (let l = 0; l < s.nLayers; l++) {
    const p = `model.layers.${l}.`;
    shapes.push([p + "input_layernorm.weight", [s.dim]], [p + "post_attention_layernorm.weight", [s.dim]]);
    if (s.family === "phi3") {
      shapes.push([p + "self_attn.qkv_proj.weight", [q + 2 * kv, s.dim]], [p + "mlp.gate_up_proj.weight", [2 * s.hiddenDim, s.dim]]);
    } else {
      shapes.push([p + "self_attn.q_proj.weight", [q, s.dim]], [p + "self_attn.k_proj.weight", [kv, s.dim]], [p + "self_attn.v_proj.weight", [kv, s.dim]]);
      shapes.push([p + "mlp.gate_proj.weight", [s.hiddenDim, s.dim]], [p + "mlp.up_proj.weight", [s.hiddenDim, s.dim]]);
      if (s.family === "qwen2") shapes.push([p + "self_attn.q_proj.bias", [q]], [p + "self_attn.k_proj.bias", [kv]], [p + "self_attn.v_proj.bias", [kv]]);
    }
    shapes.push([p + "self_attn.o_proj.weight", [s.dim, q]], [p + "mlp.down_proj.weight", [s.dim, s.hiddenDim]]);
  }
  shapes.push(["model.norm.weight", [s.dim]]);
  if (!s.tied) shapes.push(["lm_head.weight", [s.vocab, s.dim]]);
  return shapes;
}

/** The model's tensors by HF name, in HF order (transformers' layout). */
export function hfTensors(s: FamilySpec): Map<string, HostTensorF32> {
  const out = new Map<string, HostTensorF32>();
  for (const [name, shape] of hfTensorShapes(s)) {
    const [scale, offset] = valueRange(name);
    const k = name.endsWith("norm.weight") ? 1 : s.weightScale ?? 1;
    out.set(name, { shape, data: hashTensor(s.seed, name, shape.reduce((a, b) => a * b, 1), scale * k, offset) });
  }
  return out;
}

/** Writes (or reuses, cached in the OS temp dir by spec) the spec's GGUF and returns its path (bench models). */
export async function cachedFamilyGguf(s: FamilySpec): Promise<string> {
  const tag = [s.family, s.dim, s.nLayers, s.nHeads, s.nKvHeads, s.hiddenDim, s.vocab, s.tied ? "t" : "u", s.seed, s.weightScale ?? 1].join("-");
  const path = join(tmpdir(), `edge-peft-bench-${tag}.gguf`);
  const bytes = familyParameterCounts(s).total * 4;
  const size = await stat(path).then((st) => st.size, () => 0);
  if (size >= bytes && size < bytes + (4 << 20)) return path;
  await writeFamilyGguf(s, path);
  return path;
}

/** llama.cpp's general.architecture for the family (its converter writes Mistral as llama). */
export function ggufArchitecture(s: FamilySpec): string {
  return s.family === "mistral" ? "llama" : s.family;
}

/**
 * The GGUF llama.cpp's convert_hf_to_gguf.py would write for the model (F32), with the stories260K
 * tokenizer. `wrongQK` (a test control) flips the family's q/k row convention.
 */
export async function writeFamilyGguf(s: FamilySpec, path: string, o: { wrongQK?: boolean } = {}): Promise<void> {
  const arch = ggufArchitecture(s), hd = headDim(s);
  const meta = await storiesTokenizerMeta(s.vocab);
  const u32 = (value: number): GgufMetaEntry => ({ type: GgufType.UINT32, value });
  const f32 = (value: number): GgufMetaEntry => ({ type: GgufType.FLOAT32, value });
  meta.set("general.architecture", { type: GgufType.STRING, value: arch });
  // Not the family's name: llama.cpp sniffs "phi3" in general.name for Phi-3's special tokens.
  meta.set("general.name", { type: GgufType.STRING, value: `random model, seed ${s.seed}` });
  meta.set("general.file_type", u32(0));
  const k = (key: string) => `${arch}.${key}`;
  meta.set(k("vocab_size"), u32(s.vocab));
  meta.set(k("context_length"), u32(s.contextLength));
  meta.set(k("embedding_length"), u32(s.dim));
  meta.set(k("feed_forward_length"), u32(s.hiddenDim));
  meta.set(k("block_count"), u32(s.nLayers));
  meta.set(k("attention.head_count"), u32(s.nHeads));
  meta.set(k("attention.head_count_kv"), u32(s.nKvHeads));
  meta.set(k("rope.dimension_count"), u32(s.ropeDim));
  meta.set(k("rope.freq_base"), f32(s.ropeBase));
  meta.set(k("attention.layer_norm_rms_epsilon"), f32(s.normEps));
  if (s.family === "phi3") {
    meta.set(k("rope.scaling.original_context_length"), u32(s.contextLength));
    meta.set(k("attention.sliding_window"), u32(s.slidingWindow));
  } else if (s.slidingWindow) meta.set(k("attention.sliding_window"), u32(s.slidingWindow));

  const tensors: GgufWriteTensor[] = [];
  if (s.llama3) {
    const f = s.llama3;
    tensors.push({ name: "rope_freqs.weight", shape: [hd / 2], data: llama3FreqFactors(f, s.ropeBase, hd) });
  }
  for (const [name, t] of hfTensors(s)) {
    const gg = hfToGgufName(name)!;
    let data = t.data;
    if ((s.family === "llama" || s.family === "mistral") !== !!o.wrongQK) {
      if (/\.attn_[qk]\.weight$/.test(gg)) data = permuteQK(data, t.shape[0], t.shape[1], hd, "hf_to_gguf");
    }
    tensors.push({ name: gg, shape: t.shape, data });
  }
  await writeGGUF(path, { metadata: meta, tensors });
}

/** config.json as transformers saves it for the family. */
export function familyHfConfig(s: FamilySpec): Record<string, unknown> {
  const common = {
    hidden_size: s.dim, intermediate_size: s.hiddenDim, num_hidden_layers: s.nLayers, num_attention_heads: s.nHeads,
    num_key_value_heads: s.nKvHeads, hidden_act: "silu", rms_norm_eps: s.normEps, rope_theta: s.ropeBase,
    max_position_embeddings: s.contextLength, vocab_size: s.vocab, tie_word_embeddings: s.tied, torch_dtype: "float32",
    bos_token_id: 1, eos_token_id: 2,
  };
  switch (s.family) {
    case "llama":
      return {
        architectures: ["LlamaForCausalLM"], model_type: "llama", ...common, attention_bias: false, mlp_bias: false,
        rope_scaling: s.llama3
          ? { rope_type: "llama3", factor: s.llama3.factor, low_freq_factor: s.llama3.lowFreqFactor, high_freq_factor: s.llama3.highFreqFactor, original_max_position_embeddings: s.llama3.originalMaxPositionEmbeddings }
          : null,
      };
    case "mistral":
      return { architectures: ["MistralForCausalLM"], model_type: "mistral", ...common, sliding_window: s.slidingWindow || null };
    case "qwen2":
      return { architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", ...common, use_sliding_window: false, sliding_window: 32768, max_window_layers: s.nLayers };
    case "phi3":
      return {
        architectures: ["Phi3ForCausalLM"], model_type: "phi3", ...common, sliding_window: s.slidingWindow || null, rope_scaling: null,
        original_max_position_embeddings: s.contextLength, partial_rotary_factor: s.ropeDim / headDim(s),
        resid_pdrop: 0, embd_pdrop: 0, attention_dropout: 0,
      };
  }
}

/**
 * The HF directory: config.json, model.safetensors (F32) and the stories260K vocabulary as a
 * Llama-2-style tokenizer.json (transformers' LlamaConverter form, tests/tokenizer/spm_json_fixture.ts).
 */
export async function writeFamilyHf(s: FamilySpec, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const g = await readGGUF(STORIES260K);
  try {
    if (s.vocab !== (g.get<string[]>("tokenizer.ggml.tokens") ?? []).length) throw new Error(`writeFamilyHf: tokenizer.json needs vocab 512, got ${s.vocab}`);
    await writeFile(join(dir, "tokenizer.json"), spmTokenizerJson(g, "legacy"));
  } finally {
    await g.close();
  }
  const tensors = [...hfTensors(s)].map(([name, t]) => ({ name, dtype: "F32" as const, shape: t.shape, data: t.data }));
  await writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
  await writeFile(join(dir, "config.json"), JSON.stringify(familyHfConfig(s), null, 2) + "\n");
}
