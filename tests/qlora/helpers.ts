/**
 * Random llama GGUF files of a given shape (for memory figures and benchmarks), with the
 * tokenizer metadata of stories260K (512 tokens) so loadModel can open them. Written to a
 * temporary directory; the caller removes the returned path.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufType, type GgufMetaEntry, type GgufWriteTensor, readGGUF, writeGGUF } from "../../src/io/gguf.ts";
import { readFile } from "node:fs/promises";
import { f32ToF16 } from "../../src/io/bytes.ts";
import type { Gpu } from "../../src/gpu/gpu.ts";
import type { LlamaGpu } from "../../src/model/llama.ts";
import { GGUF_TO_HF_MODULE } from "../../src/model/config.ts";
import { ggufWeights } from "../../src/model/weights.ts";
import { Adapter } from "../../src/peft/adapter.ts";
import { loraKeys } from "../../src/peft/lora/method.ts";
import { Tokenizer } from "../../src/tokenizer/mod.ts";
import { SHARED, STORIES } from "../helpers.ts";

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

const MODULES = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

/** LoRA r on every linear (alpha 2r: scale 2), A and B from closed formulas so no gradient is trivially zero. */
export function closedFormLora(gpu: Gpu, llama: LlamaGpu, r: number, dropout: number): Adapter {
  const a = Adapter.create(llama.backend(), llama.config, "g", { r, lora_alpha: 2 * r, lora_dropout: dropout, target_modules: "all-linear" });
  for (let l = 0; l < llama.config.nLayers; l++) {
    MODULES.forEach((mod, m) => {
      const k = loraKeys({ layer: l, module: GGUF_TO_HF_MODULE[mod] });
      const A = a.params.get(k.A)!.value, B = a.params.get(k.B)!.value;
      gpu.write(A, Float32Array.from({ length: A.size }, (_, i) => 0.05 * Math.sin(0.7 * i + 1.3 * l + 0.31 * m)));
      gpu.write(B, Float32Array.from({ length: B.size }, (_, i) => 0.05 * Math.cos(0.5 * i + 0.9 * l + 0.17 * m)));
    });
  }
  a.trainable();
  return a;
}

/** B sequences of T tokens of tinyshakespeare (stories260K's tokenizer), next-token targets, one ignored. */
export async function shakespeareBatch(B: number, T: number) {
  const src = await ggufWeights(STORIES);
  const tok = Tokenizer.fromGGUF(src.gguf!);
  await src.close();
  const text = await readFile(`${SHARED}data/tinyshakespeare.txt`, "utf8");
  const ids = tok.encode(text.slice(0, 4000), { addSpecial: false });
  const inputs = ids.slice(0, B * T), targets = ids.slice(1, B * T + 1);
  targets[3] = -100; // an ignored position
  return { B, T, inputs, targets, count: targets.filter((t) => t >= 0).length };
}

/** |grad(a) - grad(b)| / |grad(b)| (L2) per parameter of two adapters with the same keys; throws on a zero reference gradient. */
export async function relativeGradErrors(gpu: Gpu, a: Adapter, b: Adapter): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const [name, x] of a.params) {
    const got = await gpu.readF32(x.grad!), want = await gpu.readF32(b.params.get(name)!.grad!);
    let err = 0, norm = 0;
    for (let i = 0; i < got.length; i++) {
      err += (got[i] - want[i]) ** 2;
      norm += want[i] ** 2;
    }
    if (!(norm > 0)) throw new Error(`${name}: zero reference gradient`);
    out.set(name, Math.sqrt(err / norm));
  }
  return out;
}
