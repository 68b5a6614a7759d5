/**
 * Hugging Face model directories (config.json + model.safetensors or sharded
 * model.safetensors.index.json) as a WeightSource: HF tensor names are mapped to GGUF names and
 * q/k projection rows are permuted from HF's rotate-half order into GGUF's adjacent-pair order,
 * so the model sees the same tensors whichever format the weights came from.
 */
import { basename, join, mkdir, readFile, stat } from "../util/host.ts";
import { PeftError } from "../errors.ts";
import { writeFileAtomic } from "../io/bytes.ts";
import { encodeSafetensors, readSafetensors, type SafetensorsFile, type SafetensorsWriteTensor } from "../io/safetensors.ts";
import { GGUF_TO_HF_MODULE, HF_MODULE_PARENT, HF_TO_GGUF_MODULE, type LlamaConfig, permuteQK } from "./config.ts";
import { type ConfigField, validateLlamaWeights } from "./validate_weights.ts";
import type { WeightSource } from "./weights.ts";

const SUPPORTED_ARCHITECTURES: Record<string, string> = { LlamaForCausalLM: "llama", MistralForCausalLM: "mistral" };

/** config.json keys of the llama hyper-parameters (head_dim defaults to hidden_size / num_attention_heads). */
const HF_CONFIG_KEYS: Record<ConfigField, string> = {
  vocabSize: "vocab_size", dim: "hidden_size", hiddenDim: "intermediate_size", nLayers: "num_hidden_layers",
  nHeads: "num_attention_heads", nKvHeads: "num_key_value_heads", headDim: "head_dim", ropeDim: "head_dim",
  ropeBase: "rope_theta", normEps: "rms_norm_eps", contextLength: "max_position_embeddings",
};

/** HF checkpoint tensor name -> GGUF name, or undefined for names we do not know. */
export function hfToGgufName(hf: string): string | undefined {
  if (hf === "model.embed_tokens.weight") return "token_embd.weight";
  if (hf === "model.norm.weight") return "output_norm.weight";
  if (hf === "lm_head.weight") return "output.weight";
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(hf);
  if (!m) return undefined;
  const [, layer, rest] = m;
  if (rest === "input_layernorm") return `blk.${layer}.attn_norm.weight`;
  if (rest === "post_attention_layernorm") return `blk.${layer}.ffn_norm.weight`;
  const lin = /^(self_attn|mlp)\.([a-z_]+)$/.exec(rest);
  if (lin && HF_TO_GGUF_MODULE[lin[2]] && HF_MODULE_PARENT[lin[2]] === lin[1]) return `blk.${layer}.${HF_TO_GGUF_MODULE[lin[2]]}.weight`;
  return undefined;
}

/** GGUF tensor name -> HF checkpoint name, or undefined for names without an HF llama equivalent. */
export function ggufToHfName(gguf: string): string | undefined {
  if (gguf === "token_embd.weight") return "model.embed_tokens.weight";
  if (gguf === "output_norm.weight") return "model.norm.weight";
  if (gguf === "output.weight") return "lm_head.weight";
  const m = /^blk\.(\d+)\.([a-z_]+)\.weight$/.exec(gguf);
  if (!m) return undefined;
  const [, layer, base] = m;
  if (base === "attn_norm") return `model.layers.${layer}.input_layernorm.weight`;
  if (base === "ffn_norm") return `model.layers.${layer}.post_attention_layernorm.weight`;
  const hf = GGUF_TO_HF_MODULE[base];
  return hf ? `model.layers.${layer}.${HF_MODULE_PARENT[hf]}.${hf}.weight` : undefined;
}

async function exists(path: string): Promise<boolean> {
  return await stat(path).then(() => true, () => false);
}

async function readJson(path: string, code: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new PeftError("HF_NOT_FOUND", `${path} is missing (${what})`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new PeftError(code, `${path}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/** Reads llama hyper-parameters from an HF config.json object. */
export function configFromHF(json: unknown, file: string): LlamaConfig {
  const bad = (msg: string) => new PeftError("HF_BAD_CONFIG", `${file}: ${msg}`);
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw bad("must be a JSON object");
  const c = json as Record<string, unknown>;
  let architecture: string | undefined;
  if (c.architectures !== undefined) {
    if (!Array.isArray(c.architectures)) throw bad(`architectures must be a list, got ${JSON.stringify(c.architectures)}`);
    architecture = c.architectures.map((a) => SUPPORTED_ARCHITECTURES[a as string]).find((a) => a);
    if (!architecture) {
      throw new PeftError(
        "UNSUPPORTED_ARCH",
        `${file}: architectures ${JSON.stringify(c.architectures)} are not supported (supported: ${Object.keys(SUPPORTED_ARCHITECTURES).join(", ")})`,
      );
    }
  } else if (c.model_type === "llama" || c.model_type === "mistral") {
    architecture = c.model_type;
  } else {
    throw bad(`architectures is missing and model_type ${JSON.stringify(c.model_type)} is not llama or mistral`);
  }
  // null is "use the default" only where transformers documents it (num_key_value_heads,
  // head_dim); elsewhere it is a broken value, not a missing one.
  const explicitNull = (key: string) => c[key] === null && key !== "num_key_value_heads" && key !== "head_dim";
  const int = (key: string, fallback?: number): number => {
    if (explicitNull(key)) throw bad(`${key} must be a positive integer, got null`);
    const v = c[key] ?? fallback;
    if (v === undefined) throw bad(`${key} is missing`);
    if (!Number.isSafeInteger(v) || (v as number) <= 0) throw bad(`${key} must be a positive integer, got ${JSON.stringify(c[key])}`);
    return v as number;
  };
  const float = (key: string, fallback: number): number => {
    if (explicitNull(key)) throw bad(`${key} must be a positive number, got null`);
    const v = c[key] ?? fallback;
    if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v)) throw bad(`${key} must be a positive number, got ${JSON.stringify(c[key])}`);
    return v;
  };
  if (c.rope_scaling !== undefined && c.rope_scaling !== null) {
    throw new PeftError("HF_UNSUPPORTED", `${file}: rope_scaling ${JSON.stringify(c.rope_scaling)} is not supported (only null)`);
  }
  for (const key of ["attention_bias", "mlp_bias"]) {
    if (c[key] === true) throw new PeftError("HF_UNSUPPORTED", `${file}: ${key}: true is not supported (llama linears without bias only)`);
  }
  if (c.hidden_act !== undefined && c.hidden_act !== "silu") {
    throw new PeftError("HF_UNSUPPORTED", `${file}: hidden_act ${JSON.stringify(c.hidden_act)} is not supported (only silu)`);
  }
  if (c.tie_word_embeddings !== undefined && typeof c.tie_word_embeddings !== "boolean") {
    throw bad(`tie_word_embeddings must be true or false, got ${JSON.stringify(c.tie_word_embeddings)}`);
  }
  const dim = int("hidden_size");
  const nHeads = int("num_attention_heads");
  const nKvHeads = int("num_key_value_heads", nHeads);
  const headDim = int("head_dim", dim / nHeads);
  if (headDim % 2) throw bad(`head_dim ${headDim} must be even (rotary embedding pairs)`);
  if (nHeads % nKvHeads) throw bad(`num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${nKvHeads}`);
  return {
    architecture: architecture!,
    vocabSize: int("vocab_size"),
    dim,
    hiddenDim: int("intermediate_size"),
    nLayers: int("num_hidden_layers"),
    nHeads,
    nKvHeads,
    headDim,
    ropeDim: headDim,
    ropeBase: float("rope_theta", 10000),
    normEps: float("rms_norm_eps", 1e-6),
    contextLength: int("max_position_embeddings", 2048),
    // Filled from the tensors present (HF's own default for llama is tied = false).
    tiedEmbeddings: c.tie_word_embeddings === true,
  };
}

/** HF tensor name -> shard file name, from model.safetensors.index.json. */
async function readShardIndex(dir: string): Promise<Map<string, string>> {
  const index = join(dir, "model.safetensors.index.json");
  const json = await readJson(index, "HF_BAD_INDEX", "shard index");
  const map = (json as { weight_map?: unknown })?.weight_map;
  if (map === null || typeof map !== "object" || Array.isArray(map)) {
    throw new PeftError("HF_BAD_INDEX", `${index}: weight_map must be an object of tensor name -> shard file`);
  }
  const out = new Map<string, string>();
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    // Shards live beside the index; refuse paths that would reach elsewhere.
    if (typeof file !== "string" || basename(file) !== file || file === "." || file === "..") {
      throw new PeftError("HF_BAD_INDEX", `${index}: weight_map.${name} must be a file name in the same directory, got ${JSON.stringify(file)}`);
    }
    out.set(name, file);
  }
  return out;
}

/** Opens an HF llama/mistral directory as a WeightSource (GGUF names and q/k row order). */
export async function hfWeights(dir: string): Promise<WeightSource> {
  const info = await stat(dir).catch(() => null);
  if (!info) throw new PeftError("HF_NOT_FOUND", `model directory not found: ${dir}`);
  if (!info.isDirectory()) throw new PeftError("HF_NOT_FOUND", `not a model directory: ${dir}`);
  const configPath = join(dir, "config.json");
  const json = await readJson(configPath, "HF_BAD_CONFIG", "a model directory needs config.json");
  const config = configFromHF(json, configPath);

  const single = join(dir, "model.safetensors");
  let weightMap: Map<string, string> | null;
  if (await exists(join(dir, "model.safetensors.index.json"))) {
    weightMap = await readShardIndex(dir);
  } else if (await exists(single)) {
    weightMap = null;
  } else {
    const bin = ["pytorch_model.bin", "pytorch_model.bin.index.json"].map((f) => join(dir, f));
    if ((await exists(bin[0])) || (await exists(bin[1]))) {
      throw new PeftError(
        "HF_UNSUPPORTED_FORMAT",
        `${(await exists(bin[0])) ? bin[0] : bin[1]}: PyTorch pickle checkpoints are unsupported (they can run code); convert the model to safetensors`,
      );
    }
    throw new PeftError("HF_NOT_FOUND", `${dir}: no model.safetensors or model.safetensors.index.json`);
  }

  const files = new Map<string, SafetensorsFile>();
  const closeAll = async () => {
    for (const f of files.values()) await f.close();
  };
  // GGUF name -> where its HF tensor lives.
  const located = new Map<string, { file: SafetensorsFile; hfName: string; shape: number[] }>();
  try {
    const shardNames = weightMap ? [...new Set(weightMap.values())] : ["model.safetensors"];
    for (const shard of shardNames) {
      const path = join(dir, shard);
      if (!(await exists(path))) {
        throw new PeftError("HF_NOT_FOUND", `${path} is missing (listed in model.safetensors.index.json)`);
      }
      files.set(shard, await readSafetensors(path));
    }
    for (const [shard, f] of files) {
      for (const [hfName, t] of f.tensors) {
        if (weightMap && weightMap.get(hfName) !== shard) continue; // listed under another shard
        if (hfName.endsWith("rotary_emb.inv_freq")) continue; // a cached buffer, recomputed from rope_theta
        const gg = hfToGgufName(hfName);
        if (!gg) {
          throw new PeftError("HF_UNKNOWN_TENSOR", `${f.name}: tensor ${hfName} is not part of a llama model (unsupported)`);
        }
        located.set(gg, { file: f, hfName, shape: t.shape });
      }
    }
    if (weightMap) {
      for (const [hfName, shard] of weightMap) {
        if (!files.get(shard)!.tensors.has(hfName)) {
          throw new PeftError("HF_MISSING_TENSOR", `${join(dir, shard)}: tensor ${hfName} listed in model.safetensors.index.json is missing`);
        }
      }
    }
    // An explicit tie_word_embeddings must agree with the tensors: transformers would ignore a
    // present lm_head.weight when tied, and initialise a missing one randomly when untied.
    const tie = (json as Record<string, unknown>).tie_word_embeddings;
    if (tie === true && located.has("output.weight")) {
      throw new PeftError("HF_BAD_CONFIG", `${configPath}: tie_word_embeddings is true but ${located.get("output.weight")!.file.name} has lm_head.weight (it would be ignored)`);
    }
    if (tie === false && !located.has("output.weight")) {
      throw new PeftError("HF_MISSING_TENSOR", `${dir}: tensor lm_head.weight is missing (tie_word_embeddings is false)`);
    }
    config.tiedEmbeddings = !located.has("output.weight");
    const shapes = new Map([...located].map(([gg, t]) => [gg, t.shape]));
    validateLlamaWeights(config, shapes, {
      configFile: configPath,
      key: (f) => HF_CONFIG_KEYS[f],
      tensor: (gg) => ({ file: located.get(gg)?.file.name ?? dir, name: ggufToHfName(gg) ?? gg }),
      codes: { badKey: "HF_BAD_CONFIG", missingTensor: "HF_MISSING_TENSOR", badTensor: "HF_BAD_TENSOR", unusedTensor: "HF_UNKNOWN_TENSOR" },
    });
  } catch (e) {
    await closeAll();
    throw e;
  }

  const tokenizerJson = join(dir, "tokenizer.json");
  const source: WeightSource = {
    name: dir,
    config,
    names: () => [...located.keys()],
    shape(name) {
      const t = located.get(name);
      if (!t) throw new PeftError("HF_MISSING_TENSOR", `${dir}: no tensor named ${name}`);
      return t.shape;
    },
    async readF32(name) {
      const t = located.get(name);
      if (!t) throw new PeftError("HF_MISSING_TENSOR", `${dir}: no tensor named ${name}`);
      const data = await t.file.readF32(t.hfName);
      if (/\.attn_[qk]\.weight$/.test(name)) return permuteQK(data, t.shape[0], t.shape[1], config.headDim, "hf_to_gguf");
      return data;
    },
    locate: (name) => ({ file: located.get(name)?.file.name ?? dir, name: located.get(name)?.hfName ?? name }),
    close: closeAll,
  };
  if (await exists(tokenizerJson)) source.tokenizerJsonPath = tokenizerJson;
  return source;
}

/** config.json contents describing `c` for transformers' LlamaForCausalLM / MistralForCausalLM. */
export function hfConfigJson(c: LlamaConfig, torchDtype = "float32"): Record<string, unknown> {
  const mistral = c.architecture === "mistral";
  return {
    architectures: [mistral ? "MistralForCausalLM" : "LlamaForCausalLM"],
    model_type: mistral ? "mistral" : "llama",
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    head_dim: c.headDim,
    hidden_act: "silu",
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeBase,
    rope_scaling: null,
    max_position_embeddings: c.contextLength,
    vocab_size: c.vocabSize,
    tie_word_embeddings: c.tiedEmbeddings,
    attention_bias: false,
    mlp_bias: false,
    torch_dtype: torchDtype,
  };
}

/**
 * Writes `source` as an HF directory: config.json + model.safetensors (F32, q/k rows permuted
 * back to HF order), plus tokenizer.json when the source has one. Holds all tensors in memory
 * while encoding, which suits merged small models and fixtures.
 */
export async function writeHfDirectory(dir: string, source: WeightSource, extra?: { torchDtype?: string }): Promise<void> {
  const c = source.config;
  if (c.ropeDim !== c.headDim) {
    throw new PeftError("HF_UNSUPPORTED", `${source.name}: partial rotary (rope dim ${c.ropeDim} < head dim ${c.headDim}) cannot be written as an HF llama`);
  }
  const tensors: SafetensorsWriteTensor[] = [];
  for (const name of source.names()) {
    const hfName = ggufToHfName(name);
    if (!hfName) {
      if (name === "rope_freqs.weight") {
        throw new PeftError("HF_UNSUPPORTED", `${source.name}: tensor rope_freqs.weight (scaled RoPE) has no HF llama equivalent`);
      }
      throw new PeftError("HF_UNKNOWN_TENSOR", `${source.name}: tensor ${name} has no HF llama name`);
    }
    const shape = source.shape(name);
    let data = await source.readF32(name);
    if (/\.attn_[qk]\.weight$/.test(name)) data = permuteQK(data, shape[0], shape[1], c.headDim, "gguf_to_hf");
    tensors.push({ name: hfName, dtype: "F32", shape, data });
  }
  tensors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new PeftError("WRITE_FAILED", `cannot create model directory ${dir}: ${(e as Error).message}`, { cause: e });
  }
  await writeFileAtomic(join(dir, "model.safetensors"), encodeSafetensors(tensors, { format: "pt" }));
  if (source.tokenizerJsonPath) await writeFileAtomic(join(dir, "tokenizer.json"), new Uint8Array(await readFile(source.tokenizerJsonPath)));
  const json = JSON.stringify(hfConfigJson(c, extra?.torchDtype), null, 2) + "\n";
  await writeFileAtomic(join(dir, "config.json"), new TextEncoder().encode(json));
}
