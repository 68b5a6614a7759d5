/**
 * Hugging Face PEFT adapter directories: `adapter_config.json` + `adapter_model.safetensors`.
 * Tensors keep PEFT's on-disk names (base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight)
 * and PEFT's (HF) q/k row order; loraBToGguf / loraBToHf convert q/k lora_B rows and DoRA
 * magnitudes to and from the GGUF order our model uses.
 */
import { mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { PeftError } from "../errors.ts";
import { GGUF_TO_HF_MODULE, HF_MODULE_PARENT, type LlamaConfig, linearShape, LINEAR_MODULES, permuteQK } from "../model/config.ts";
import { checkFinite, eventLoopYielder, writeFileAtomic } from "./bytes.ts";
import { ADAPTER_SAFETENSORS_LIMITS, encodeSafetensors, readSafetensors, type SafetensorsWriteTensor } from "./safetensors.ts";

export interface PeftAdapterConfig {
  peft_type: string;
  r?: number;
  lora_alpha?: number;
  lora_dropout?: number;
  target_modules?: string[] | string;
  bias?: string;
  use_rslora?: boolean;
  use_dora?: boolean;
  task_type?: string;
  base_model_name_or_path?: string | null;
  layers_to_transform?: number[] | number | null;
  fan_in_fan_out?: boolean;
  init_lora_weights?: boolean | string;
  modules_to_save?: string[] | null;
  inference_mode?: boolean;
  [k: string]: unknown;
}

export interface AdapterTensor {
  shape: number[];
  data: Float32Array;
}

export interface PeftAdapter {
  config: PeftAdapterConfig;
  tensors: Map<string, AdapterTensor>;
}

export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";

/** PEFT method names (peft.utils.PeftType) we recognise, to tell "unsupported" from "unknown". */
const KNOWN_PEFT_TYPES = [
  "LORA", "ADALORA", "IA3", "LOHA", "LOKR", "OFT", "BOFT", "VERA", "FOURIERFT", "HRA", "VBLORA", "LN_TUNING",
  "PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING", "MULTITASK_PROMPT_TUNING", "POLY", "XLORA", "CPT", "BONE",
];
const SUPPORTED_PEFT_TYPES = ["LORA"];

function badConfig(file: string, msg: string): PeftError {
  return new PeftError("ADAPTER_BAD_CONFIG", `${file}: ${msg}`);
}

function unsupported(file: string, msg: string): PeftError {
  return new PeftError("ADAPTER_UNSUPPORTED", `${file}: ${msg}`);
}

const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === "string");
const isNonNegInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/**
 * Checks an adapter config's fields and types; unknown extra keys pass through unchanged so the
 * config round-trips. Throws ADAPTER_BAD_CONFIG for malformed fields, ADAPTER_UNSUPPORTED for valid
 * PEFT settings this runtime cannot honour.
 */
export function validateAdapterConfig(cfg: unknown, file: string): PeftAdapterConfig {
  if (cfg === null || typeof cfg !== "object" || Array.isArray(cfg)) {
    throw badConfig(file, `adapter config must be a JSON object, got ${Array.isArray(cfg) ? "array" : cfg === null ? "null" : typeof cfg}`);
  }
  const c = cfg as Record<string, unknown>;
  if (typeof c.peft_type !== "string") throw badConfig(file, `peft_type must be a string (e.g. "LORA"), got ${JSON.stringify(c.peft_type)}`);
  const type = c.peft_type.toUpperCase();
  if (!SUPPORTED_PEFT_TYPES.includes(type)) {
    if (KNOWN_PEFT_TYPES.includes(type)) {
      throw unsupported(file, `peft_type ${c.peft_type} is not supported for adapter directories (supported: ${SUPPORTED_PEFT_TYPES.join(", ")})`);
    }
    throw badConfig(file, `unknown peft_type ${JSON.stringify(c.peft_type)} (supported: ${SUPPORTED_PEFT_TYPES.join(", ")})`);
  }
  if (c.r === undefined) throw badConfig(file, `r is missing (the LoRA rank, a positive integer)`);
  if (!Number.isSafeInteger(c.r) || (c.r as number) <= 0) throw badConfig(file, `r must be a positive integer, got ${JSON.stringify(c.r)}`);
  if (c.lora_alpha !== undefined && (typeof c.lora_alpha !== "number" || !Number.isFinite(c.lora_alpha))) {
    throw badConfig(file, `lora_alpha must be a number, got ${JSON.stringify(c.lora_alpha)}`);
  }
  if (c.lora_dropout !== undefined && (typeof c.lora_dropout !== "number" || !(c.lora_dropout >= 0 && c.lora_dropout < 1))) {
    throw badConfig(file, `lora_dropout must be a number in [0, 1), got ${JSON.stringify(c.lora_dropout)}`);
  }
  if (c.target_modules !== undefined && c.target_modules !== null) {
    if (!(typeof c.target_modules === "string" || isStringArray(c.target_modules))) {
      throw badConfig(file, `target_modules must be a list of module names or a string, got ${JSON.stringify(c.target_modules)}`);
    }
    if (c.target_modules.length === 0) throw badConfig(file, `target_modules is empty`);
  }
  if (c.bias !== undefined && !["none", "all", "lora_only"].includes(c.bias as string)) {
    throw badConfig(file, `bias must be "none", "all" or "lora_only", got ${JSON.stringify(c.bias)}`);
  }
  for (const key of ["use_rslora", "use_dora", "fan_in_fan_out", "inference_mode"]) {
    if (c[key] !== undefined && typeof c[key] !== "boolean") throw badConfig(file, `${key} must be true or false, got ${JSON.stringify(c[key])}`);
  }
  if (c.fan_in_fan_out === true) {
    throw unsupported(file, `fan_in_fan_out: true (Conv1D/GPT-2 style weights) is not supported; llama linears are [out, in]`);
  }
  if (c.init_lora_weights !== undefined && typeof c.init_lora_weights !== "boolean" && typeof c.init_lora_weights !== "string") {
    throw badConfig(file, `init_lora_weights must be a boolean or a string, got ${JSON.stringify(c.init_lora_weights)}`);
  }
  if (c.task_type !== undefined && c.task_type !== null && typeof c.task_type !== "string") {
    throw badConfig(file, `task_type must be a string, got ${JSON.stringify(c.task_type)}`);
  }
  if (c.base_model_name_or_path !== undefined && c.base_model_name_or_path !== null && typeof c.base_model_name_or_path !== "string") {
    throw badConfig(file, `base_model_name_or_path must be a string or null, got ${JSON.stringify(c.base_model_name_or_path)}`);
  }
  const ltt = c.layers_to_transform;
  if (ltt !== undefined && ltt !== null && !isNonNegInt(ltt) && !(Array.isArray(ltt) && ltt.every(isNonNegInt))) {
    throw badConfig(file, `layers_to_transform must be a layer index, a list of them, or null, got ${JSON.stringify(ltt)}`);
  }
  if (c.modules_to_save !== undefined && c.modules_to_save !== null) {
    if (!isStringArray(c.modules_to_save)) throw badConfig(file, `modules_to_save must be a list of names or null, got ${JSON.stringify(c.modules_to_save)}`);
    if (c.modules_to_save.length) throw unsupported(file, `modules_to_save (${c.modules_to_save.join(", ")}) is not supported`);
  }
  // Per-module ranks/alphas would change the expected tensor shapes and scales module by module.
  for (const key of ["rank_pattern", "alpha_pattern"]) {
    const v = c[key];
    if (v !== undefined && v !== null) {
      if (typeof v !== "object" || Array.isArray(v)) throw badConfig(file, `${key} must be an object, got ${JSON.stringify(v)}`);
      if (Object.keys(v).length) throw unsupported(file, `${key} (per-module ${key === "rank_pattern" ? "ranks" : "alphas"}) is not supported`);
    }
  }
  return c as PeftAdapterConfig;
}

/** Accepts a PEFT module name (q_proj) or a GGUF one (attn_q) and returns the PEFT name. */
function hfModuleName(module: string): string {
  const m = GGUF_TO_HF_MODULE[module] ?? module;
  if (!LINEAR_MODULES.includes(m)) {
    throw new PeftError("UNKNOWN_MODULE", `unknown module ${module} (known: ${LINEAR_MODULES.join(", ")})`);
  }
  return m;
}

/** PEFT on-disk key of a LoRA matrix, e.g. ("q_proj", 0, "lora_A") -> base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight */
export function loraKey(hfModule: string, layer: number, part: "lora_A" | "lora_B"): string {
  const m = hfModuleName(hfModule);
  return `base_model.model.model.layers.${layer}.${HF_MODULE_PARENT[m]}.${m}.${part}.weight`;
}

/** PEFT on-disk key of a DoRA magnitude vector ([out]). */
export function doraMagnitudeKey(hfModule: string, layer: number): string {
  const m = hfModuleName(hfModule);
  return `base_model.model.model.layers.${layer}.${HF_MODULE_PARENT[m]}.${m}.lora_magnitude_vector`;
}

// The adapter name (".default") appears in in-memory state dicts and some third-party files; PEFT
// strips it when saving. The "base_model.model." prefix is absent in some exported adapters.
const LORA_KEY = /^(?:base_model\.model\.)?model\.layers\.(\d+)\.(self_attn|mlp)\.([A-Za-z0-9_]+)\.(lora_A|lora_B)(?:\.[A-Za-z0-9_-]+)?\.weight$/;
const MAGNITUDE_KEY = /^(?:base_model\.model\.)?model\.layers\.(\d+)\.(self_attn|mlp)\.([A-Za-z0-9_]+)\.lora_magnitude_vector(?:\.(?!weight$)[A-Za-z0-9_-]+)?(?:\.weight)?$/;

/** Parses a PEFT LoRA tensor key (with or without adapter name); null when it is not one. */
export function parseLoraKey(key: string): { layer: number; module: string; part: "lora_A" | "lora_B" | "lora_magnitude_vector" } | null {
  const m = LORA_KEY.exec(key);
  if (m) return { layer: Number(m[1]), module: m[3], part: m[4] as "lora_A" | "lora_B" };
  const g = MAGNITUDE_KEY.exec(key);
  if (g) return { layer: Number(g[1]), module: g[3], part: "lora_magnitude_vector" };
  return null;
}

function isQK(module: string): boolean {
  const m = GGUF_TO_HF_MODULE[module] ?? module;
  return m === "q_proj" || m === "k_proj";
}

/**
 * HF (disk) -> GGUF (model) row order of a lora_B [rows, r] (or a DoRA magnitude with r = 1).
 * q_proj/k_proj rows are permuted per head; other modules are returned unchanged (same array).
 */
export function loraBToGguf(module: string, data: Float32Array, rows: number, r: number, headDim: number): Float32Array {
  return isQK(module) ? permuteQK(data, rows, r, headDim, "hf_to_gguf") : data;
}

/** GGUF (model) -> HF (disk) row order; the inverse of loraBToGguf. */
export function loraBToHf(module: string, data: Float32Array, rows: number, r: number, headDim: number): Float32Array {
  return isQK(module) ? permuteQK(data, rows, r, headDim, "gguf_to_hf") : data;
}

/** Writes an adapter directory (mkdir -p; each file atomic). Tensor keys must already be PEFT names. */
export async function saveAdapterDir(dir: string, config: PeftAdapterConfig, tensors: Map<string, AdapterTensor>): Promise<void> {
  validateAdapterConfig(config, join(dir, ADAPTER_CONFIG_FILE));
  const list: SafetensorsWriteTensor[] = [];
  for (const key of [...tensors.keys()].sort()) {
    const t = tensors.get(key)!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (!(t.data instanceof Float32Array) || t.data.length !== n) {
      throw new PeftError("ADAPTER_SHAPE_MISMATCH", `adapter tensor ${key}: shape [${t.shape}] needs ${n} f32 values, got ${t.data?.length}`);
    }
    list.push({ name: key, dtype: "F32", shape: t.shape, data: t.data });
  }
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new PeftError("WRITE_FAILED", `cannot create adapter directory ${dir}: ${(e as Error).message}`, { cause: e });
  }
  // Weights first, config last: a directory with a config always has its weights.
  await writeFileAtomic(join(dir, ADAPTER_WEIGHTS_FILE), encodeSafetensors(list, { format: "pt" }));
  await writeFileAtomic(join(dir, ADAPTER_CONFIG_FILE), new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n"));
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads an adapter directory; LoRA keys are normalised to PEFT's saved naming (no adapter name). */
export async function loadAdapterDir(dir: string): Promise<PeftAdapter> {
  let info;
  try {
    info = await stat(dir);
  } catch (e) {
    throw new PeftError("ADAPTER_NOT_FOUND", `adapter directory not found: ${dir}`, { cause: e });
  }
  if (!info.isDirectory()) throw new PeftError("ADAPTER_NOT_FOUND", `not an adapter directory: ${dir}`);
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(configPath, "utf8");
  } catch (e) {
    throw new PeftError("ADAPTER_NOT_FOUND", `${configPath} is missing (an adapter directory needs ${ADAPTER_CONFIG_FILE})`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PeftError("ADAPTER_BAD_CONFIG", `${configPath}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  const config = validateAdapterConfig(json, configPath);

  const weightsPath = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!(await exists(weightsPath))) {
    const bin = join(dir, "adapter_model.bin");
    if (await exists(bin)) {
      throw new PeftError(
        "ADAPTER_UNSUPPORTED_FORMAT",
        `${bin} is a PyTorch pickle, which is unsupported (it can run code); convert it to ${ADAPTER_WEIGHTS_FILE} ` +
          `(e.g. load it with PEFT and save_pretrained(..., safe_serialization=True))`,
      );
    }
    throw new PeftError("ADAPTER_NOT_FOUND", `${weightsPath} is missing (an adapter directory needs ${ADAPTER_WEIGHTS_FILE})`);
  }
  const st = await readSafetensors(weightsPath, undefined, ADAPTER_SAFETENSORS_LIMITS);
  const tensors = new Map<string, AdapterTensor>();
  const pause = eventLoopYielder(); // a server validating a big upload keeps answering meanwhile
  try {
    for (const [key, t] of st.tensors) {
      if (!["F32", "F16", "BF16", "F64"].includes(t.dtype)) {
        throw new PeftError("ADAPTER_BAD_TENSOR", `${weightsPath}: tensor ${key} has dtype ${t.dtype}; adapter tensors must be floats`);
      }
      const parsed = parseLoraKey(key);
      let name = key;
      if (parsed && LINEAR_MODULES.includes(parsed.module)) {
        name = parsed.part === "lora_magnitude_vector"
          ? doraMagnitudeKey(parsed.module, parsed.layer)
          : loraKey(parsed.module, parsed.layer, parsed.part);
      }
      if (tensors.has(name)) throw new PeftError("ADAPTER_BAD_TENSOR", `${weightsPath}: tensor ${key} duplicates ${name}`);
      const data = await st.readF32(key);
      // NaN/Inf would load and then break generation far from the cause.
      checkFinite(data, weightsPath, key, "ADAPTER_BAD_TENSOR");
      tensors.set(name, { shape: [...t.shape], data });
      await pause();
    }
  } finally {
    await st.close();
  }
  return { config, tensors };
}

/**
 * Checks an adapter against a model: every tensor is a LoRA A/B (or DoRA magnitude) of a known
 * llama linear in range, A is [r, in], B is [out, r], magnitude [out], A and B come in pairs.
 */
export function validateAdapterAgainst(config: LlamaConfig, adapter: PeftAdapter, dir: string): void {
  const file = join(dir, ADAPTER_WEIGHTS_FILE);
  const r = adapter.config.r;
  if (!Number.isSafeInteger(r) || r! <= 0) throw badConfig(join(dir, ADAPTER_CONFIG_FILE), `r must be a positive integer, got ${r}`);
  const mismatch = (msg: string) => new PeftError("ADAPTER_SHAPE_MISMATCH", `${file}: ${msg}`);
  const parts = new Map<string, Set<string>>();
  for (const [key, t] of adapter.tensors) {
    const p = parseLoraKey(key);
    if (!p) {
      throw new PeftError("ADAPTER_UNSUPPORTED", `${file}: tensor ${key} is not a LoRA tensor of a llama linear layer (only LoRA A/B and DoRA magnitudes are supported)`);
    }
    if (!LINEAR_MODULES.includes(p.module)) {
      throw new PeftError("UNKNOWN_MODULE", `${file}: tensor ${key} targets unknown module ${p.module} (known: ${LINEAR_MODULES.join(", ")})`);
    }
    if (p.layer >= config.nLayers) {
      throw mismatch(`tensor ${key} is for layer ${p.layer} but the model has ${config.nLayers} layers (0..${config.nLayers - 1})`);
    }
    const [out, inp] = linearShape(config, p.module);
    const expected = p.part === "lora_A" ? [r!, inp] : p.part === "lora_B" ? [out, r!] : [out];
    if (t.shape.length !== expected.length || t.shape.some((d, i) => d !== expected[i])) {
      throw mismatch(`tensor ${key} has shape [${t.shape}], expected [${expected}] (${p.part} of ${p.module}, r=${r})`);
    }
    if (t.data.length !== expected.reduce((a, b) => a * b, 1)) {
      throw mismatch(`tensor ${key} has ${t.data.length} values for shape [${t.shape}]`);
    }
    const id = `${p.layer}.${p.module}`;
    if (!parts.has(id)) parts.set(id, new Set());
    parts.get(id)!.add(p.part);
  }
  for (const [id, have] of parts) {
    const [layer, module] = [Number(id.split(".")[0]), id.split(".")[1]];
    for (const need of ["lora_A", "lora_B"] as const) {
      if (!have.has(need)) {
        throw mismatch(`${loraKey(module, layer, need)} is missing (its ${need === "lora_A" ? "lora_B" : "lora_A"} is present)`);
      }
    }
    if (adapter.config.use_dora && !have.has("lora_magnitude_vector")) {
      throw mismatch(`${doraMagnitudeKey(module, layer)} is missing (use_dora is true)`);
    }
    if (!adapter.config.use_dora && have.has("lora_magnitude_vector")) {
      throw mismatch(`${doraMagnitudeKey(module, layer)} is present but use_dora is not true in ${ADAPTER_CONFIG_FILE}`);
    }
  }
}
