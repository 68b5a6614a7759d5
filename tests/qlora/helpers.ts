/**
 * Random llama GGUF files of a given shape (for memory figures and benchmarks), with the
 * tokenizer metadata of stories260K (512 tokens) so loadModel can open them. Written to a
 * temporary directory; the caller removes the returned path.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufType, type GgufMetaEntry, type GgufWriteTensor, readGGUF, writeGGUF } from "../../src/io/gguf.ts";
import { f32ToF16 } from "../../src/io/bytes.ts";
import { STORIES } from "../helpers.ts";

export interface RandomLlamaShape {
  dim: number;
  nLayers: number;
  hiddenDim: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  contextLength?: number;
  seed?: number;
  /** Store 2-D weights as F16 (halves the file; values are the same rounded). */
  f16?: boolean;
}

export async function randomLlamaGguf(s: RandomLlamaShape): Promise<string> {
  const src = await readGGUF(STORIES);
  const metadata = new Map<string, GgufMetaEntry>();
  for (const [k, v] of src.metadata) if (k.startsWith("tokenizer.")) metadata.set(k, v);
  await src.close();
  const u32 = (value: number): GgufMetaEntry => ({ type: GgufType.UINT32, value });
  metadata.set("general.architecture", { type: GgufType.STRING, value: "llama" });
  metadata.set("general.name", { type: GgufType.STRING, value: `random-${s.dim}x${s.nLayers}` });
  metadata.set("llama.embedding_length", u32(s.dim));
  metadata.set("llama.feed_forward_length", u32(s.hiddenDim));
  metadata.set("llama.block_count", u32(s.nLayers));
  metadata.set("llama.attention.head_count", u32(s.nHeads));
  metadata.set("llama.attention.head_count_kv", u32(s.nKvHeads));
  metadata.set("llama.context_length", u32(s.contextLength ?? 512));
  metadata.set("llama.vocab_size", u32(s.vocabSize));
  metadata.set("llama.rope.dimension_count", u32(s.dim / s.nHeads));
  metadata.set("llama.attention.layer_norm_rms_epsilon", { type: GgufType.FLOAT32, value: 1e-5 });
  let state = (s.seed ?? 1) >>> 0 || 1;
  const rand = () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 4294967296;
  };
  const tensors: GgufWriteTensor[] = [];
  const add = (name: string, shape: number[], scale: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const f = new Float32Array(n);
    if (scale === 0) f.fill(1);
    else for (let i = 0; i < n; i++) f[i] = (rand() * 2 - 1) * scale;
    tensors.push({ name, shape, data: s.f16 && shape.length === 2 ? Uint16Array.from(f, f32ToF16) : f });
  };
  const hd = s.dim / s.nHeads, kv = s.nKvHeads * hd;
  const w = 0.02 * Math.sqrt(3); // uniform with std 0.02
  add("token_embd.weight", [s.vocabSize, s.dim], w);
  for (let l = 0; l < s.nLayers; l++) {
    const p = `blk.${l}.`;
    add(p + "attn_norm.weight", [s.dim], 0);
    add(p + "attn_q.weight", [s.nHeads * hd, s.dim], w);
    add(p + "attn_k.weight", [kv, s.dim], w);
    add(p + "attn_v.weight", [kv, s.dim], w);
    add(p + "attn_output.weight", [s.dim, s.nHeads * hd], w);
    add(p + "ffn_norm.weight", [s.dim], 0);
    add(p + "ffn_gate.weight", [s.hiddenDim, s.dim], w);
    add(p + "ffn_up.weight", [s.hiddenDim, s.dim], w);
    add(p + "ffn_down.weight", [s.dim, s.hiddenDim], w);
  }
  add("output_norm.weight", [s.dim], 0);
  add("output.weight", [s.vocabSize, s.dim], w);
  const dir = await mkdtemp(join(tmpdir(), "qlora-"));
  const path = join(dir, "random.gguf");
  await writeGGUF(path, { metadata, tensors });
  return path;
}
