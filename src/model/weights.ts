/**
 * A model's weights as the model consumes them, whatever the file format: a config, GGUF tensor
 * names (token_embd.weight, blk.N.attn_q.weight, ...), q/k rows in GGUF's adjacent-pair order,
 * read one tensor at a time so loading holds at most one f32 tensor beyond what the GPU keeps.
 */
import { PeftError } from "../errors.ts";
import type { ByteInput } from "../io/bytes.ts";
import { type GgufFile, readGGUF } from "../io/gguf.ts";
import type { LlamaConfig } from "./config.ts";

export interface WeightSource {
  /** Path or name, for error messages. */
  readonly name: string;
  readonly config: LlamaConfig;
  /** Tensor names present (GGUF naming). */
  names(): string[];
  /** [out, in] (PyTorch order) shape of a tensor. */
  shape(name: string): number[];
  /** The tensor as f32, in GGUF naming and q/k row order. */
  readF32(name: string): Promise<Float32Array>;
  /** The GGUF file when the model came from one (tokenizer metadata lives there). */
  gguf?: GgufFile;
  /** Path of tokenizer.json for HF directories. */
  tokenizerJsonPath?: string;
  close(): Promise<void>;
}

function num(g: GgufFile, key: string, fallback?: number): number {
  const v = g.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new PeftError("GGUF_MISSING_KEY", `${g.source.name}: metadata ${key} is missing`);
  }
  if (typeof v !== "number") throw new PeftError("GGUF_BAD_KEY", `${g.source.name}: metadata ${key} is not a number (${typeof v})`);
  return v;
}

/** Reads the llama hyper-parameters from GGUF metadata. */
export function configFromGGUF(g: GgufFile): LlamaConfig {
  const arch = g.get<string>("general.architecture");
  if (arch === undefined) throw new PeftError("GGUF_MISSING_KEY", `${g.source.name}: metadata general.architecture is missing`);
  if (!["llama", "mistral"].includes(arch)) {
    throw new PeftError("UNSUPPORTED_ARCH", `${g.source.name}: architecture ${arch} is not supported (supported: llama, mistral)`);
  }
  const p = (k: string) => `${arch}.${k}`;
  const dim = num(g, p("embedding_length"));
  const nHeads = num(g, p("attention.head_count"));
  const headDim = num(g, p("attention.key_length"), dim / nHeads);
  const tokens = g.get<string[]>("tokenizer.ggml.tokens");
  const embd = g.tensors.get("token_embd.weight");
  if (!embd) throw new PeftError("GGUF_MISSING_TENSOR", `${g.source.name}: tensor token_embd.weight is missing`);
  const config: LlamaConfig = {
    architecture: arch,
    vocabSize: num(g, p("vocab_size"), tokens?.length ?? embd.shape[0]),
    dim,
    hiddenDim: num(g, p("feed_forward_length")),
    nLayers: num(g, p("block_count")),
    nHeads,
    nKvHeads: num(g, p("attention.head_count_kv"), nHeads),
    headDim,
    ropeDim: num(g, p("rope.dimension_count"), headDim),
    ropeBase: num(g, p("rope.freq_base"), 10000),
    normEps: num(g, p("attention.layer_norm_rms_epsilon"), 1e-5),
    contextLength: num(g, p("context_length"), 2048),
    tiedEmbeddings: !g.tensors.has("output.weight"),
  };
  if (!Number.isInteger(headDim) || headDim % 2) {
    throw new PeftError("GGUF_BAD_KEY", `${g.source.name}: head dimension ${headDim} (embedding ${dim} / heads ${nHeads}) must be an even integer`);
  }
  if (nHeads % config.nKvHeads) {
    throw new PeftError("GGUF_BAD_KEY", `${g.source.name}: head_count ${nHeads} is not a multiple of head_count_kv ${config.nKvHeads}`);
  }
  return config;
}

/** A GGUF model from a path, bytes or a Blob / File (`name` labels messages; a File's own name by default). */
export async function ggufWeights(input: ByteInput, name?: string): Promise<WeightSource> {
  const g = await readGGUF(input, name);
  const path = g.source.name;
  let config: LlamaConfig;
  try {
    config = configFromGGUF(g);
  } catch (e) {
    await g.close();
    throw e;
  }
  return {
    name: path,
    config,
    gguf: g,
    names: () => [...g.tensors.keys()],
    shape(name) {
      const t = g.tensors.get(name);
      if (!t) throw new PeftError("GGUF_MISSING_TENSOR", `${path}: no tensor named ${name}`);
      return t.shape;
    },
    readF32: (name) => g.readF32(name),
    close: () => g.close(),
  };
}
