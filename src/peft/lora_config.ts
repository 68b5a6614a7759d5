/**
 * LoRA configuration with HF PEFT's names and defaults (peft.LoraConfig), so a config written
 * here is a valid adapter_config.json there and one written there loads here.
 * normalizeLoraConfig fills defaults and rejects what we cannot honour, naming the parameter.
 */
import { PeftError } from "../errors.ts";

export type InitLoraWeights = boolean | "gaussian";

export interface LoraConfig {
  peft_type: "LORA";
  task_type: string;
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  /** Module names (matched as in PEFT), a regex that must fullmatch the module key, or "all-linear". */
  target_modules: string[] | string;
  /** Only these layer indices get adapters; null = all layers. */
  layers_to_transform: number[] | null;
  bias: "none";
  use_rslora: boolean;
  use_dora: boolean;
  /** true: A kaiming-uniform, B zero (PEFT's default); "gaussian": A ~ N(0, (1/r)^2), B zero; false: both random. */
  init_lora_weights: InitLoraWeights;
  modules_to_save: string[] | null;
  fan_in_fan_out: false;
  inference_mode: boolean;
  base_model_name_or_path: string | null;
  /** Keys PEFT writes that we accept with their inert values (null, false, {}, []), kept for round-trips. */
  [extra: string]: unknown;
}

/** PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING["llama"]. */
export const LLAMA_DEFAULT_TARGETS = ["q_proj", "v_proj"];

const DEFAULTS = {
  peft_type: "LORA",
  task_type: "CAUSAL_LM",
  r: 8,
  lora_alpha: 8,
  lora_dropout: 0,
  bias: "none",
  use_rslora: false,
  use_dora: false,
  init_lora_weights: true,
  layers_to_transform: null,
  modules_to_save: null,
  fan_in_fan_out: false,
  inference_mode: false,
  base_model_name_or_path: null,
} as const;

const KNOWN = new Set([...Object.keys(DEFAULTS), "target_modules"]);

/**
 * Keys PEFT writes into every adapter_config.json whose value changes nothing for us (they only
 * matter together with an option we reject, or at PEFT's runtime): kept as given.
 */
const PASSTHROUGH = new Set([
  "megatron_core", // used only with megatron_config
  "qalora_group_size", // used only with use_qalora
  "runtime_config", // PEFT runtime knobs (ephemeral GPU offload)
  "revision",
  "auto_mapping",
  "peft_version",
]);

function bad(param: string, message: string): never {
  throw new PeftError("LORA_CONFIG", `LoRA config: ${param} ${message}`);
}

/** Values that mean "feature off" in PEFT configs: we can accept unknown keys carrying them. */
function isInert(v: unknown): boolean {
  if (v === null || v === false || v === undefined) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === "object") return Object.keys(v as object).length === 0;
  return false;
}

/** Fills PEFT's defaults and validates; throws PeftError("LORA_CONFIG") naming the parameter. */
export function normalizeLoraConfig(user: Record<string, unknown> = {}): LoraConfig {
  if (user === null || typeof user !== "object" || Array.isArray(user)) bad("", `must be an object, got ${JSON.stringify(user)}`);
  const u = { ...DEFAULTS, ...user } as Record<string, unknown>;
  for (const [k, v] of Object.entries(user)) {
    if (v === undefined) u[k] = (DEFAULTS as Record<string, unknown>)[k]; // {r: undefined} means default
  }

  if (u.peft_type !== "LORA") bad("peft_type", `'${u.peft_type}' is not supported here (expected "LORA")`);
  if (typeof u.task_type !== "string") bad("task_type", `must be a string, got ${JSON.stringify(u.task_type)}`);

  const r = u.r;
  if (typeof r !== "number" || !Number.isInteger(r) || r <= 0) bad("r", `must be a positive integer, got ${JSON.stringify(r)}`);
  const alpha = u.lora_alpha;
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) bad("lora_alpha", `must be a finite number, got ${JSON.stringify(alpha)}`);
  const dropout = u.lora_dropout;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1)) bad("lora_dropout", `must be in [0, 1), got ${JSON.stringify(dropout)}`);

  if (u.bias !== "none") bad("bias", `'${u.bias}' is not supported (only "none": LoRA trains no bias terms)`);
  for (const flag of ["use_rslora", "use_dora", "inference_mode"]) {
    if (typeof u[flag] !== "boolean") bad(flag, `must be true or false, got ${JSON.stringify(u[flag])}`);
  }
  if (u.fan_in_fan_out !== false) bad("fan_in_fan_out", "must be false (llama linears store weights as [out, in])");
  const init = u.init_lora_weights;
  if (init !== true && init !== false && init !== "gaussian") {
    bad("init_lora_weights", `${JSON.stringify(init)} is not supported (true, false or "gaussian")`);
  }

  const target_modules = normalizeTargets(u.target_modules);
  const layers_to_transform = normalizeLayers(u.layers_to_transform);
  if (typeof target_modules === "string" && layers_to_transform !== null && target_modules !== "all-linear") {
    // PEFT: "`layers_to_transform` cannot be used when `target_modules` is a str."
    bad("layers_to_transform", "cannot be used when target_modules is a regex string (put the layer numbers in the regex)");
  }
  const modules_to_save = u.modules_to_save;
  if (modules_to_save !== null && !(Array.isArray(modules_to_save) && modules_to_save.length === 0)) {
    bad("modules_to_save", `is not supported yet (got ${JSON.stringify(modules_to_save)})`);
  }
  const base = u.base_model_name_or_path;
  if (base !== null && typeof base !== "string") bad("base_model_name_or_path", `must be a string or null, got ${JSON.stringify(base)}`);

  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(user)) {
    if (KNOWN.has(k)) continue;
    if (k === "layers_pattern" && (v === "layers" || (Array.isArray(v) && v.length === 1 && v[0] === "layers"))) {
      extra[k] = v; // llama's layer container is "layers", PEFT's own default for it
      continue;
    }
    if (!PASSTHROUGH.has(k) && !isInert(v)) bad(k, `is not a supported LoRA option (value ${JSON.stringify(v)})`);
    extra[k] = v;
  }

  return {
    ...extra,
    peft_type: "LORA",
    task_type: u.task_type as string,
    r,
    lora_alpha: alpha,
    lora_dropout: dropout,
    target_modules,
    layers_to_transform,
    bias: "none",
    use_rslora: u.use_rslora as boolean,
    use_dora: u.use_dora as boolean,
    init_lora_weights: init as InitLoraWeights,
    modules_to_save: null,
    fan_in_fan_out: false,
    inference_mode: u.inference_mode as boolean,
    base_model_name_or_path: base as string | null,
  };
}

function normalizeTargets(t: unknown): string[] | string {
  if (t === undefined || t === null) return [...LLAMA_DEFAULT_TARGETS];
  if (typeof t === "string") {
    if (t === "") bad("target_modules", "must not be empty");
    return t;
  }
  if (!Array.isArray(t) || !t.every((x) => typeof x === "string" && x !== "")) {
    bad("target_modules", `must be a list of module names, a regex string or "all-linear", got ${JSON.stringify(t)}`);
  }
  if (t.length === 0) bad("target_modules", "must not be an empty list");
  return [...new Set(t as string[])]; // PEFT keeps a set
}

function normalizeLayers(l: unknown): number[] | null {
  if (l === undefined || l === null) return null;
  const list = typeof l === "number" ? [l] : l;
  if (!Array.isArray(list) || list.length === 0 || !list.every((x) => Number.isInteger(x) && x >= 0)) {
    bad("layers_to_transform", `must be a layer index or a non-empty list of them, got ${JSON.stringify(l)}`);
  }
  return [...new Set(list as number[])].sort((a, b) => a - b);
}

/** The factor on B·A: alpha / r, or alpha / sqrt(r) with rsLoRA (Kalajdzievski 2023). */
export function loraScale(cfg: Pick<LoraConfig, "lora_alpha" | "r" | "use_rslora">): number {
  return cfg.use_rslora ? cfg.lora_alpha / Math.sqrt(cfg.r) : cfg.lora_alpha / cfg.r;
}
