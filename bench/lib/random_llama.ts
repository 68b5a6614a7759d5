/**
 * Bench helper: a random-initialised llama written as a GGUF (our writeGGUF): F32, or with every
 * matrix in F16 or a ggml block type quantized by our port of llama.cpp's reference quantizers
 * (llama-quantize --pure without an importance matrix), norms F32; with the stories260K tokenizer
 * metadata; a bigger vocabulary is padded with dummy tokens `<r_N>`
 * (type 1, score 0) so llama.cpp and our loader accept it. Cached in the OS temp dir by config
 * and seed (the file is rewritten when missing or of the wrong size).
 */
import { stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufType, type GgufMetaEntry, readGGUF, writeGGUF, type GgufWriteTensor } from "../../src/io/gguf.ts";
import { GGML, GGML_TYPES, ggmlTensorBytes } from "../../src/io/ggml_quants.ts";
import { quantizeGgml } from "../../src/io/ggml_quantize.ts";
import { f32ToF16 } from "../../src/io/bytes.ts";

export const SHARED = new URL("../../../shared/", import.meta.url).pathname;
export const STORIES260K = join(SHARED, "models/stories260K/stories260K.gguf");

export interface RandomLlamaConfig {
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  hiddenDim: number;
  vocab: number;
  contextLength: number;
}

/** The ~25M (non-embedding) llama of the issues: dim 512, 8 layers, 8 heads, ffn 1376, vocab 32000. */
export const LLAMA_25M: RandomLlamaConfig = { dim: 512, nLayers: 8, nHeads: 8, nKvHeads: 8, hiddenDim: 1376, vocab: 32000, contextLength: 2048 };
/** The same with ffn 1280, so every row is whole 256-element K-quant blocks (24M non-embedding parameters). */
export const LLAMA_24M_K: RandomLlamaConfig = { ...LLAMA_25M, hiddenDim: 1280 };

/** Storage of the matrices: F32, F16, or a ggml block type name ("Q8_0", "Q4_K", "Q6_K", ...). */
export type MatrixType = keyof typeof GGML;

export function parameterCounts(c: RandomLlamaConfig): { total: number; nonEmbedding: number } {
  const hd = c.dim / c.nHeads;
  const perLayer = 2 * c.dim * c.dim + 2 * c.dim * c.nKvHeads * hd + 3 * c.dim * c.hiddenDim + 2 * c.dim;
  const nonEmbedding = c.nLayers * perLayer + c.dim;
  return { total: nonEmbedding + 2 * c.vocab * c.dim, nonEmbedding };
}

/** Gaussian N(0, std²) from a seeded LCG + Box-Muller (fast enough for ~60M values). */
function randn(n: number, std: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s >>> 8) + 0.5) / 16777216;
  };
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u())) * std, t = 2 * Math.PI * u();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

/**
 * The stories260K tokenizer's GGUF metadata (tokenizer.* keys) for a vocabulary of `vocab`
 * tokens: padded with dummy tokens `<r_N>` (type 1, score 0) or cut to size.
 */
export async function storiesTokenizerMeta(vocab: number): Promise<Map<string, GgufMetaEntry>> {
  const base = await readGGUF(STORIES260K);
  const meta = new Map<string, GgufMetaEntry>();
  for (const [k, e] of base.metadata) if (k.startsWith("tokenizer.")) meta.set(k, e);
  await base.close();
  const tokens = [...(meta.get("tokenizer.ggml.tokens")!.value as string[])];
  const scores = [...(meta.get("tokenizer.ggml.scores")!.value as number[])];
  const types = [...(meta.get("tokenizer.ggml.token_type")!.value as number[])];
  for (let i = tokens.length; i < vocab; i++) {
    tokens.push(`<r_${i}>`);
    scores.push(0);
    types.push(1);
  }
  meta.set("tokenizer.ggml.tokens", { type: GgufType.ARRAY, arrayType: GgufType.STRING, value: tokens.slice(0, vocab) });
  meta.set("tokenizer.ggml.scores", { type: GgufType.ARRAY, arrayType: GgufType.FLOAT32, value: scores.slice(0, vocab) });
  meta.set("tokenizer.ggml.token_type", { type: GgufType.ARRAY, arrayType: GgufType.INT32, value: types.slice(0, vocab) });
  return meta;
}

/** Writes (or reuses) the random llama GGUF with its matrices in `type` and returns its path. */
export async function randomLlamaGGUF(c: RandomLlamaConfig = LLAMA_25M, seed = 1, type: MatrixType = "F32"): Promise<string> {
  const { total } = parameterCounts(c);
  const matrices = total - c.nLayers * 2 * c.dim - c.dim;
  const dataBytes = ggmlTensorBytes(GGML[type], [matrices], "bench") + (total - matrices) * 4;
  const suffix = type === "F32" ? "" : `-${type}`;
  const path = join(tmpdir(), `edge-peft-bench-llama-d${c.dim}-l${c.nLayers}-h${c.nHeads}-f${c.hiddenDim}-v${c.vocab}-s${seed}${suffix}.gguf`);
  try {
    const st = await stat(path);
    if (st.size >= dataBytes && st.size < dataBytes + (4 << 20)) return path;
  } catch { /* not there yet */ }

  const meta = await storiesTokenizerMeta(c.vocab);
  const u32 = (value: number): GgufMetaEntry => ({ type: GgufType.UINT32, value });
  meta.set("general.architecture", { type: GgufType.STRING, value: "llama" });
  meta.set("general.name", { type: GgufType.STRING, value: `random-llama-${c.dim}x${c.nLayers}` });
  meta.set("general.file_type", u32(FILE_TYPE[type] ?? 0));
  meta.set("llama.context_length", u32(c.contextLength));
  meta.set("llama.embedding_length", u32(c.dim));
  meta.set("llama.feed_forward_length", u32(c.hiddenDim));
  meta.set("llama.block_count", u32(c.nLayers));
  meta.set("llama.attention.head_count", u32(c.nHeads));
  meta.set("llama.attention.head_count_kv", u32(c.nKvHeads));
  meta.set("llama.rope.dimension_count", u32(c.dim / c.nHeads));
  meta.set("llama.attention.layer_norm_rms_epsilon", { type: GgufType.FLOAT32, value: 1e-5 });

  const hd = c.dim / c.nHeads, kv = c.nKvHeads * hd;
  let k = seed * 1000;
  const w = (name: string, shape: number[]): GgufWriteTensor => {
    const data = randn(shape.reduce((a, b) => a * b, 1), 0.02, ++k);
    if (type === "F32") return { name, shape, data };
    if (type === "F16") return { name, shape, data: Uint16Array.from(data, f32ToF16) };
    return { name, shape, data: quantizeGgml(GGML[type], data, shape[1], name), ggmlType: GGML[type] };
  };
  const ones = (name: string, n: number): GgufWriteTensor => ({ name, shape: [n], data: new Float32Array(n).fill(1) });
  const tensors: GgufWriteTensor[] = [w("token_embd.weight", [c.vocab, c.dim]), ones("output_norm.weight", c.dim), w("output.weight", [c.vocab, c.dim])];
  for (let l = 0; l < c.nLayers; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      ones(p + "attn_norm.weight", c.dim), w(p + "attn_q.weight", [c.dim, c.dim]), w(p + "attn_k.weight", [kv, c.dim]),
      w(p + "attn_v.weight", [kv, c.dim]), w(p + "attn_output.weight", [c.dim, c.dim]), ones(p + "ffn_norm.weight", c.dim),
      w(p + "ffn_gate.weight", [c.hiddenDim, c.dim]), w(p + "ffn_up.weight", [c.hiddenDim, c.dim]), w(p + "ffn_down.weight", [c.dim, c.hiddenDim]),
    );
  }
  await writeGGUF(path, { metadata: meta, tensors });
  return path;
}

/** llama.cpp's general.file_type (LLAMA_FTYPE_MOSTLY_*) of a file whose matrices are all `type`. */
const FILE_TYPE: Partial<Record<MatrixType, number>> = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7, Q5_0: 8, Q5_1: 9, Q4_K: 14 /* _S */, Q5_K: 16 /* _S */, Q6_K: 18, BF16: 32,
};

/** Bits per parameter of a type's storage (Q4_K 4.5, Q8_0 8.5, F16 16). */
export function bitsPerParam(type: MatrixType): number {
  const t = GGML_TYPES.get(GGML[type])!;
  return (t.typeSize * 8) / t.blockSize;
}

/** Seeded pseudo-random prompt ids: BOS then ids in [3, vocab) (the same list for every engine). */
export function promptIds(n: number, vocab: number, seed = 1234): number[] {
  let s = seed >>> 0;
  const out = [1];
  while (out.length < n) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(3 + (s >>> 8) % (vocab - 3));
  }
  return out;
}

export const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1];
