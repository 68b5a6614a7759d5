/**
 * A model's weights as the model consumes them, whatever the file format: a config, GGUF tensor
 * names (token_embd.weight, blk.N.attn_q.weight, ...), q/k rows in GGUF's adjacent-pair order,
 * read one tensor at a time so loading holds at most one f32 tensor beyond what the GPU keeps.
 */
import { PeftError } from "../errors.ts";
import type { ByteInput } from "../io/bytes.ts";
import { type GgufFile, GgufType, readGGUF } from "../io/gguf.ts";
import { GGML_TYPES } from "../io/ggml_quants.ts";
import type { LlamaConfig } from "./config.ts";
import { familyOfGguf, SUPPORTED_GGUF_ARCHITECTURES } from "./families/family.ts";
import { checkRopeFreqs, type ConfigField, ROPE_FREQS, validateLlamaWeights } from "./validate_weights.ts";

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
  /** GGUF sources: the tensor's ggml type id (io/ggml_quants.ts GGML). */
  ggmlType?(name: string): number | undefined;
  /** GGUF sources: the tensor's bytes as stored (a block format stays in it on the GPU). */
  readRaw?(name: string): Promise<Uint8Array>;
  /** The GGUF file when the model came from one (tokenizer metadata lives there). */
  gguf?: GgufFile;
  /** Path of tokenizer.json for HF directories. */
  tokenizerJsonPath?: string;
  /** The file a tensor lives in and its name there (an HF shard and HF name), for messages. */
  locate?(name: string): { file: string; name: string };
  close(): Promise<void>;
}

/** "<file>: tensor <name>" in the source's own terms (the shard and HF name for HF directories). */
export function tensorLabel(source: WeightSource, name: string): string {
  const at = source.locate?.(name) ?? { file: source.name, name };
  return `${at.file}: tensor ${at.name}`;
}

const INT_TYPES = new Set([
  GgufType.UINT8, GgufType.INT8, GgufType.UINT16, GgufType.INT16, GgufType.UINT32, GgufType.INT32, GgufType.UINT64, GgufType.INT64,
]);

/**
 * A numeric metadata value: integers must be stored as an integer type (llama.cpp reads them as
 * u32), floats as any number type. Range checks come later (validateLlamaWeights).
 */
function meta(g: GgufFile, key: string, kind: "int" | "float", fallback?: number): number {
  const e = g.metadata.get(key);
  if (!e) {
    if (fallback !== undefined) return fallback;
    throw new PeftError("GGUF_MISSING_KEY", `${g.source.name}: metadata ${key} is missing`);
  }
  const numeric = INT_TYPES.has(e.type) || (kind === "float" && (e.type === GgufType.FLOAT32 || e.type === GgufType.FLOAT64));
  if (!numeric) {
    const want = kind === "int" ? "an integer" : "a number";
    throw new PeftError("GGUF_BAD_KEY", `${g.source.name}: metadata ${key} must be ${want}, got ${GgufType[e.type] ?? e.type} ${JSON.stringify(e.value)?.slice(0, 40) ?? ""}`);
  }
  // 64-bit values beyond 2^53 arrive as bigints: out of any range we accept.
  return typeof e.value === "bigint" ? Number.NaN : Number(e.value);
}

/**
 * Metadata keys that change the computation in ways this runtime does not implement, with their
 * neutral values and what is supported instead.
 */
const UNSUPPORTED_KEYS: Record<string, [(v: unknown) => boolean, string]> = {
  "rope.scaling.type": [(v) => v === "none", "supported: none, and Llama 3 scaling as the rope_freqs.weight tensor"],
  "rope.scaling.factor": [(v) => v === 1 || v === 0, "supported: 1, and Llama 3 scaling as the rope_freqs.weight tensor"],
  "rope.scale_linear": [(v) => v === 1, "supported: 1"],
  "expert_count": [(v) => v === 0, "mixture-of-experts models are not supported"],
  "attention.clamp_kqv": [(v) => v === 0, "supported: 0"],
  "logit_scale": [(v) => v === 1, "supported: 1"],
  "attention.sliding_window_pattern": [(v) => v === 1 || (Array.isArray(v) && v.every((x) => x === true)), "per-layer window patterns are not supported"],
};

/** Reads a model's hyper-parameters from GGUF metadata and checks them and every tensor's shape against each other. */
export function configFromGGUF(g: GgufFile): LlamaConfig {
  const file = g.source.name;
  const arch = g.get<string>("general.architecture");
  if (arch === undefined) throw new PeftError("GGUF_MISSING_KEY", `${file}: metadata general.architecture is missing`);
  const fam = typeof arch === "string" ? familyOfGguf(arch) : undefined;
  if (!fam) {
    throw new PeftError(
      "UNSUPPORTED_ARCH",
      `${file}: metadata general.architecture = ${JSON.stringify(arch)?.slice(0, 60)} is not supported (supported: ${SUPPORTED_GGUF_ARCHITECTURES.join(", ")})`,
    );
  }
  const p = (k: string) => `${arch}.${k}`;
  for (const [k, [neutral, supported]] of Object.entries(UNSUPPORTED_KEYS)) {
    const v = g.get(p(k));
    if (v !== undefined && !neutral(v)) {
      throw new PeftError("GGUF_UNSUPPORTED", `${file}: metadata ${p(k)} = ${JSON.stringify(v)?.slice(0, 60)} is not supported (${supported})`);
    }
  }
  const dim = meta(g, p("embedding_length"), "int");
  const nHeads = meta(g, p("attention.head_count"), "int");
  const headDim = meta(g, p("attention.key_length"), "int", dim / nHeads);
  const valueLength = meta(g, p("attention.value_length"), "int", headDim);
  if (valueLength !== headDim) {
    throw new PeftError("GGUF_UNSUPPORTED", `${file}: metadata ${p("attention.value_length")} ${valueLength} differs from the key length ${headDim} (not supported)`);
  }
  const tokens = g.get<string[]>("tokenizer.ggml.tokens");
  const embd = g.tensors.get("token_embd.weight");
  if (!embd) throw new PeftError("GGUF_MISSING_TENSOR", `${file}: tensor token_embd.weight is missing`);
  const config: LlamaConfig = {
    architecture: fam.name,
    vocabSize: meta(g, p("vocab_size"), "int", Array.isArray(tokens) ? tokens.length : embd.shape[0]),
    dim,
    hiddenDim: meta(g, p("feed_forward_length"), "int"),
    nLayers: meta(g, p("block_count"), "int"),
    nHeads,
    nKvHeads: meta(g, p("attention.head_count_kv"), "int", nHeads),
    headDim,
    ropeDim: meta(g, p("rope.dimension_count"), "int", headDim),
    ropeBase: meta(g, p("rope.freq_base"), "float", 10000),
    // Required, as llama.cpp requires them: a default would silently differ from the trained value.
    normEps: meta(g, p("attention.layer_norm_rms_epsilon"), "float"),
    contextLength: meta(g, p("context_length"), "int"),
    tiedEmbeddings: !g.tensors.has("output.weight"),
    // llama.cpp's converter writes 0 for "no window" (Phi-4); llama.cpp's llama graph ignores the
    // key, we run the window the file states (as transformers runs Mistral's sliding_window).
    slidingWindow: meta(g, p("attention.sliding_window"), "int", 0),
  };
  const keys: Record<ConfigField, string> = {
    vocabSize: g.metadata.has(p("vocab_size")) || !Array.isArray(tokens) ? p("vocab_size") : "tokenizer.ggml.tokens (its length)",
    dim: p("embedding_length"),
    hiddenDim: p("feed_forward_length"),
    nLayers: p("block_count"),
    nHeads: p("attention.head_count"),
    nKvHeads: p("attention.head_count_kv"),
    headDim: g.metadata.has(p("attention.key_length")) ? p("attention.key_length") : `${p("embedding_length")} / ${p("attention.head_count")}`,
    ropeDim: p("rope.dimension_count"),
    ropeBase: p("rope.freq_base"),
    normEps: p("attention.layer_norm_rms_epsilon"),
    contextLength: p("context_length"),
    slidingWindow: p("attention.sliding_window"),
  };
  const shapes = new Map([...g.tensors].map(([name, t]) => [name, t.shape]));
  validateLlamaWeights(config, shapes, {
    configFile: file,
    key: (f) => keys[f],
    tensor: (name) => ({ file, name }),
    codes: { badKey: "GGUF_BAD_KEY", missingTensor: "GGUF_MISSING_TENSOR", badTensor: "GGUF_BAD_TENSOR", unusedTensor: "GGUF_UNUSED_TENSOR" },
  }, hasRopeFreqs(g));
  return config;
}

/** Names of the tensor types a model may be stored in (each decodes on the CPU; block formats also run on the GPU as they are). */
const RUNNABLE_TYPES = [...GGML_TYPES.values()].filter((t) => t.decodes).map((t) => t.name);

/** Refuses a tensor in a ggml type we cannot run, naming the file, tensor and type, before anything loads. */
export function checkTensorTypes(g: GgufFile): void {
  for (const t of g.tensors.values()) {
    const traits = GGML_TYPES.get(t.ggmlType);
    if (traits?.decodes) continue;
    throw new PeftError(
      "GGUF_UNSUPPORTED_TYPE",
      `${g.source.name}: tensor ${t.name} is stored as ${traits?.name ?? `ggml type ${t.ggmlType}`}, which this runtime does not run ` +
        `(supported: ${RUNNABLE_TYPES.join(", ")}); re-quantize the model to one of those (e.g. llama-quantize in.gguf out.gguf Q4_K_M)`,
    );
  }
}

/** The file carries Llama 3 rope factors its family runs. */
function hasRopeFreqs(g: GgufFile): boolean {
  return g.tensors.has(ROPE_FREQS) && !!familyOfGguf(String(g.get("general.architecture")))?.ropeFreqs;
}

/** A GGUF model from a path, bytes or a Blob / File (`name` labels messages; a File's own name by default). */
export async function ggufWeights(input: ByteInput, name?: string): Promise<WeightSource> {
  const g = await readGGUF(input, name);
  const path = g.source.name;
  let config: LlamaConfig;
  try {
    config = configFromGGUF(g);
    checkTensorTypes(g);
    if (hasRopeFreqs(g)) config.ropeFreqFactors = checkRopeFreqs(await g.readF32(ROPE_FREQS), config, { file: path, name: ROPE_FREQS }, "GGUF_BAD_TENSOR");
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
    ggmlType: (name) => g.tensors.get(name)?.ggmlType,
    readRaw: async (name) => (await g.readRaw(name)).bytes,
    close: () => g.close(),
  };
}
