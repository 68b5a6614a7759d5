/**
 * Hugging Face model directories (config.json + model.safetensors or sharded
 * model.safetensors.index.json) of every family (families/family.ts) as a WeightSource: HF
 * tensor names are mapped to GGUF names and, for adjacent-pair rope families (llama, mistral),
 * q/k projection rows are permuted from HF's rotate-half order into GGUF's order, so the model
 * sees the same tensors whichever format the weights came from. NEOX families (qwen2, phi3) keep
 * HF's row order, as llama.cpp's converter does.
 */
import { basename, join, mkdir, readFile, stat } from "../util/host.ts";
import { PeftError } from "../errors.ts";
import { writeFileAtomic } from "../io/bytes.ts";
import { encodeSafetensors, readSafetensors, type SafetensorsFile, type SafetensorsWriteTensor } from "../io/safetensors.ts";
import { HF_MODULE_PARENT, HF_TO_GGUF_MODULE, hfModuleOf, type Llama3RopeScaling, llama3FreqFactors, type LlamaConfig, reorderQK } from "./config.ts";
import { FAMILIES, type Family, family, familyOfHf, SUPPORTED_HF_ARCHITECTURES, SUPPORTED_HF_MODEL_TYPES } from "./families/family.ts";
import { type ConfigField, ROPE_FREQS, validateLlamaWeights } from "./validate_weights.ts";
import type { WeightSource } from "./weights.ts";

/** config.json keys of the hyper-parameters (head_dim defaults to hidden_size / num_attention_heads). */
const HF_CONFIG_KEYS: Record<ConfigField, string> = {
  vocabSize: "vocab_size", dim: "hidden_size", hiddenDim: "intermediate_size", nLayers: "num_hidden_layers",
  nHeads: "num_attention_heads", nKvHeads: "num_key_value_heads", headDim: "head_dim", ropeDim: "head_dim",
  ropeBase: "rope_theta", normEps: "rms_norm_eps", contextLength: "max_position_embeddings", slidingWindow: "sliding_window",
};

/** HF checkpoint tensor name -> GGUF name (any family's linears and q/k/v biases), or undefined for names we do not know. */
export function hfToGgufName(hf: string): string | undefined {
  if (hf === "model.embed_tokens.weight") return "token_embd.weight";
  if (hf === "model.norm.weight") return "output_norm.weight";
  if (hf === "lm_head.weight") return "output.weight";
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  if (!m) return undefined;
  const [, layer, rest, kind] = m;
  if (kind === "weight" && rest === "input_layernorm") return `blk.${layer}.attn_norm.weight`;
  if (kind === "weight" && rest === "post_attention_layernorm") return `blk.${layer}.ffn_norm.weight`;
  const lin = /^(self_attn|mlp)\.([a-z_]+)$/.exec(rest);
  if (lin && HF_TO_GGUF_MODULE[lin[2]] && HF_MODULE_PARENT[lin[2]] === lin[1]) return `blk.${layer}.${HF_TO_GGUF_MODULE[lin[2]]}.${kind}`;
  return undefined;
}

/** GGUF tensor name -> HF checkpoint name in c's family, or undefined for names without an HF equivalent. */
export function ggufToHfName(gguf: string, c: { architecture: string }): string | undefined {
  if (gguf === "token_embd.weight") return "model.embed_tokens.weight";
  if (gguf === "output_norm.weight") return "model.norm.weight";
  if (gguf === "output.weight") return "lm_head.weight";
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(gguf);
  if (!m) return undefined;
  const [, layer, base, kind] = m;
  if (kind === "weight" && base === "attn_norm") return `model.layers.${layer}.input_layernorm.weight`;
  if (kind === "weight" && base === "ffn_norm") return `model.layers.${layer}.post_attention_layernorm.weight`;
  const hf = hfModuleOf(c, base);
  return hf ? `model.layers.${layer}.${HF_MODULE_PARENT[hf]}.${hf}.${kind}` : undefined;
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

/** The family config.json describes: its architectures list, else its model_type. */
function hfFamily(c: Record<string, unknown>, file: string, bad: (msg: string) => PeftError): Family {
  if (c.architectures !== undefined) {
    if (!Array.isArray(c.architectures)) throw bad(`architectures must be a list, got ${JSON.stringify(c.architectures)}`);
    const fam = c.architectures.map((a) => typeof a === "string" && SUPPORTED_HF_ARCHITECTURES.includes(a) ? familyOfHf(a) : undefined).find((f) => f);
    if (!fam) {
      throw new PeftError(
        "UNSUPPORTED_ARCH",
        `${file}: architectures ${JSON.stringify(c.architectures)?.slice(0, 100)} are not supported (supported: ${SUPPORTED_HF_ARCHITECTURES.join(", ")})`,
      );
    }
    return fam;
  }
  const fam = typeof c.model_type === "string" && SUPPORTED_HF_MODEL_TYPES.includes(c.model_type) ? familyOfHf(c.model_type) : undefined;
  if (!fam) {
    throw new PeftError(
      "UNSUPPORTED_ARCH",
      `${file}: architectures is missing and model_type ${JSON.stringify(c.model_type)?.slice(0, 60)} is not supported (supported: ${SUPPORTED_HF_MODEL_TYPES.join(", ")})`,
    );
  }
  return fam;
}

/**
 * rope_scaling (or transformers 5's rope_parameters): null / type "default" -> none; type
 * "llama3" (llama family) -> its parameters; anything else refused, naming the type.
 */
function hfRopeScaling(c: Record<string, unknown>, fam: Family, file: string, bad: (msg: string) => PeftError): Llama3RopeScaling | undefined {
  const key = c.rope_scaling !== undefined && c.rope_scaling !== null ? "rope_scaling" : "rope_parameters";
  const rs = c[key];
  if (rs === undefined || rs === null) return undefined;
  if (typeof rs !== "object" || Array.isArray(rs)) throw bad(`${key} must be an object or null, got ${JSON.stringify(rs)?.slice(0, 60)}`);
  const r = rs as Record<string, unknown>;
  const type = r.rope_type ?? r.type;
  if (type === undefined) throw bad(`${key} has no rope_type (a scaling of unknown kind would silently change the model)`);
  if (type === "default") return undefined;
  if (type !== "llama3" || !fam.ropeFreqs) {
    throw new PeftError(
      "HF_UNSUPPORTED",
      `${file}: ${key} type ${JSON.stringify(type)?.slice(0, 40)} is not supported for ${fam.hfModelType} (supported: null, "default"${fam.ropeFreqs ? ', "llama3"' : ""})`,
    );
  }
  const num = (k: string, fallback?: number): number => {
    const v = r[k] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw bad(`${key}.${k} must be a positive number, got ${JSON.stringify(r[k])}`);
    return v;
  };
  const s: Llama3RopeScaling = {
    factor: num("factor"),
    lowFreqFactor: num("low_freq_factor"),
    highFreqFactor: num("high_freq_factor"),
    originalMaxPositionEmbeddings: num("original_max_position_embeddings"),
  };
  if (!(s.highFreqFactor > s.lowFreqFactor)) throw bad(`${key}.high_freq_factor must be larger than low_freq_factor`);
  return s;
}

/** Reads a model's hyper-parameters from an HF config.json object (any supported family). */
export function configFromHF(json: unknown, file: string): LlamaConfig {
  const bad = (msg: string) => new PeftError("HF_BAD_CONFIG", `${file}: ${msg}`);
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw bad("must be a JSON object");
  const c = json as Record<string, unknown>;
  const fam = hfFamily(c, file, bad);
  // null is "use the default" only where transformers documents it (num_key_value_heads,
  // head_dim, sliding_window); elsewhere it is a broken value, not a missing one.
  const explicitNull = (key: string) => c[key] === null && !["num_key_value_heads", "head_dim", "sliding_window"].includes(key);
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
  const ropeScaling = hfRopeScaling(c, fam, file, bad);
  for (const key of ["attention_bias", "mlp_bias"]) {
    if (c[key] === true) throw new PeftError("HF_UNSUPPORTED", `${file}: ${key}: true is not supported (${fam.hfModelType} linears without bias only; q/k/v biases: qwen2)`);
  }
  if (c.use_sliding_window === true) {
    throw new PeftError("HF_UNSUPPORTED", `${file}: use_sliding_window: true is not supported (per-layer windows from max_window_layers; supported: false)`);
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
  // Phi3's partial rotation (Phi-4-mini: 0.75): transformers' rotary_ndims = int(head_dim * factor).
  let ropeDim = headDim;
  if (fam.name === "phi3" && c.partial_rotary_factor !== undefined && c.partial_rotary_factor !== null) {
    const f = c.partial_rotary_factor;
    if (typeof f !== "number" || !(f > 0 && f <= 1)) throw bad(`partial_rotary_factor must be a number in (0, 1], got ${JSON.stringify(f)}`);
    ropeDim = Math.floor(headDim * f);
    if (ropeDim < 2 || ropeDim % 2) throw bad(`partial_rotary_factor ${f} gives ${ropeDim} rotary dims of head_dim ${headDim} (must be even and >= 2)`);
  }
  // Mistral and Phi-3 run the window transformers reads from sliding_window (null: none); qwen2's
  // applies only with use_sliding_window (refused above); llama has none.
  const windowed = (fam.name === "mistral" || fam.name === "phi3") && c.sliding_window !== undefined && c.sliding_window !== null;
  const slidingWindow = windowed ? int("sliding_window") : 0;
  const ropeBase = float("rope_theta", typeof (c.rope_parameters as Record<string, unknown>)?.rope_theta === "number" ? (c.rope_parameters as { rope_theta: number }).rope_theta : 10000);
  return {
    architecture: fam.name,
    vocabSize: int("vocab_size"),
    dim,
    hiddenDim: int("intermediate_size"),
    nLayers: int("num_hidden_layers"),
    nHeads,
    nKvHeads,
    headDim,
    ropeDim,
    ropeBase,
    normEps: float("rms_norm_eps", 1e-6),
    contextLength: int("max_position_embeddings", 2048),
    // Filled from the tensors present (HF's own default for these families is tied = false).
    tiedEmbeddings: c.tie_word_embeddings === true,
    slidingWindow,
    ...(ropeScaling ? { ropeScaling, ropeFreqFactors: llama3FreqFactors(ropeScaling, ropeBase, headDim) } : {}),
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

/** Opens an HF directory of a supported family as a WeightSource (GGUF names and q/k row order). */
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
          throw new PeftError("HF_UNKNOWN_TENSOR", `${f.name}: tensor ${hfName} is not part of a ${config.architecture} model (unsupported)`);
        }
        const twin = located.get(gg);
        // llama's up_proj and phi3's gate_up_proj are both GGUF ffn_up: one directory cannot hold both.
        if (twin) throw new PeftError("HF_UNKNOWN_TENSOR", `${f.name}: tensors ${twin.hfName} and ${hfName} are the same ${config.architecture} weight (${gg}); one of them does not belong to the model`);
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
      tensor: (gg) => ({ file: located.get(gg)?.file.name ?? dir, name: ggufToHfName(gg, config) ?? gg }),
      codes: { badKey: "HF_BAD_CONFIG", missingTensor: "HF_MISSING_TENSOR", badTensor: "HF_BAD_TENSOR", unusedTensor: "HF_UNKNOWN_TENSOR" },
    }, false); // HF has no rope_freqs tensor: Llama 3 factors come from rope_scaling
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
      if (/\.attn_[qk]\.weight$/.test(name)) return reorderQK(config, data, t.shape[0], t.shape[1], "hf_to_gguf");
      return data;
    },
    locate: (name) => ({ file: located.get(name)?.file.name ?? dir, name: located.get(name)?.hfName ?? name }),
    close: closeAll,
  };
  if (await exists(tokenizerJson)) source.tokenizerJsonPath = tokenizerJson;
  return source;
}

/** The HF family `c` is written as: a GGUF llama with a sliding window is a Mistral (llama.cpp's converter writes Mistral as llama). */
function hfFamilyOf(c: LlamaConfig): Family {
  const fam = family(c);
  return fam.name === "llama" && c.slidingWindow ? FAMILIES.mistral : fam;
}

/** config.json contents describing `c` for transformers' model class of its family. */
export function hfConfigJson(c: LlamaConfig, torchDtype = "float32"): Record<string, unknown> {
  const fam = hfFamilyOf(c);
  const json: Record<string, unknown> = {
    architectures: [fam.hfArchitectures[0]],
    model_type: fam.hfModelType,
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    hidden_act: "silu",
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeBase,
    rope_scaling: c.ropeScaling
      ? {
        rope_type: "llama3",
        factor: c.ropeScaling.factor,
        low_freq_factor: c.ropeScaling.lowFreqFactor,
        high_freq_factor: c.ropeScaling.highFreqFactor,
        original_max_position_embeddings: c.ropeScaling.originalMaxPositionEmbeddings,
      }
      : null,
    max_position_embeddings: c.contextLength,
    vocab_size: c.vocabSize,
    tie_word_embeddings: c.tiedEmbeddings,
    torch_dtype: torchDtype,
  };
  switch (fam.name) {
    case "llama":
      return { ...json, head_dim: c.headDim, attention_bias: false, mlp_bias: false };
    case "mistral":
      return { ...json, head_dim: c.headDim, sliding_window: c.slidingWindow || null };
    case "qwen2":
      return { ...json, use_sliding_window: false, sliding_window: null, max_window_layers: c.nLayers };
    case "phi3":
      return {
        ...json, sliding_window: c.slidingWindow || null, original_max_position_embeddings: c.contextLength,
        ...(c.ropeDim !== c.headDim ? { partial_rotary_factor: c.ropeDim / c.headDim } : {}),
      };
  }
}

/** Why `c` cannot be written as an HF config (a value transformers' config class cannot express), or undefined. */
function hfInexpressible(c: LlamaConfig): string | undefined {
  const fam = hfFamilyOf(c);
  if (c.ropeDim !== c.headDim && fam.name !== "phi3") return `partial rotary (rope dim ${c.ropeDim} < head dim ${c.headDim}) cannot be written as an HF ${fam.hfModelType}`;
  if ((fam.name === "qwen2" || fam.name === "phi3") && c.headDim * c.nHeads !== c.dim) return `${fam.hfModelType} configs have no head_dim (head dim ${c.headDim} is not hidden size / heads)`;
  if (c.slidingWindow && (fam.name === "llama" || fam.name === "qwen2")) return `a sliding window of ${c.slidingWindow} cannot be written for HF ${fam.hfModelType} (it has none)`;
  if (c.ropeFreqFactors && !c.ropeScaling) {
    return `tensor ${ROPE_FREQS} (Llama 3 rope factors from a GGUF) has no HF equivalent without the rope_scaling parameters it was made from`;
  }
  return undefined;
}

/**
 * Writes `source` as an HF directory: config.json + model.safetensors (F32, q/k rows permuted
 * back to HF order for adjacent-pair families, qwen2's biases as q/k/v_proj.bias), plus
 * tokenizer.json when the source has one. Holds all tensors in memory
 * while encoding, which suits merged small models and fixtures.
 */
export async function writeHfDirectory(dir: string, source: WeightSource, extra?: { torchDtype?: string }): Promise<void> {
  const c = source.config;
  const why = hfInexpressible(c);
  if (why) throw new PeftError("HF_UNSUPPORTED", `${source.name}: ${why}`);
  const tensors: SafetensorsWriteTensor[] = [];
  for (const name of source.names()) {
    if (name === ROPE_FREQS) continue; // rope_scaling in config.json says it
    const hfName = ggufToHfName(name, c);
    if (!hfName) throw new PeftError("HF_UNKNOWN_TENSOR", `${source.name}: tensor ${name} has no HF ${c.architecture} name`);
    const shape = source.shape(name);
    let data = await source.readF32(name);
    if (/\.attn_[qk]\.weight$/.test(name)) data = reorderQK(c, data, shape[0], shape[1], "gguf_to_hf");
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
