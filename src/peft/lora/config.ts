/**
 * LoRA configuration with HF PEFT's names and defaults (peft.LoraConfig), so a config written
 * here is a valid adapter_config.json there and one written there loads here.
 * normalizeLoraConfig fills defaults and rejects what we cannot honour, naming the parameter.
 */
import { ConfigReader } from "../config_common.ts";
import type { LlamaConfig } from "../../model/config.ts";
import { family } from "../../model/families/family.ts";

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
  target_modules: null,
};

/** Fills PEFT's defaults and validates; throws PeftError("LORA_CONFIG") naming the parameter. */
export function normalizeLoraConfig(user: Record<string, unknown> = {}, model?: LlamaConfig): LoraConfig {
  const c = new ConfigReader("LoRA", "LORA_CONFIG", "LORA", user, DEFAULTS);
  const u = c.u;
  const r = u.r;
  if (typeof r !== "number" || !Number.isInteger(r) || r <= 0) c.bad("r", `must be a positive integer, got ${JSON.stringify(r)}`);
  const alpha = u.lora_alpha;
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) c.bad("lora_alpha", `must be a finite number, got ${JSON.stringify(alpha)}`);
  const dropout = u.lora_dropout;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1)) c.bad("lora_dropout", `must be in [0, 1), got ${JSON.stringify(dropout)}`);
  if (u.bias !== "none") c.bad("bias", `'${u.bias}' is not supported (only "none": LoRA trains no bias terms; BitFit trains biases)`);
  const use_rslora = c.bool("use_rslora"), use_dora = c.bool("use_dora");
  if (u.fan_in_fan_out !== false) c.bad("fan_in_fan_out", "must be false (llama linears store weights as [out, in])");
  const init = u.init_lora_weights;
  if (init !== true && init !== false && init !== "gaussian") {
    c.bad("init_lora_weights", `${JSON.stringify(init)} is not supported (true, false or "gaussian")`);
  }
  // PEFT's default for the model type (phi3: the fused qkv_proj).
  const target_modules = c.targets("target_modules", model ? family(model).loraTargets as string[] : LLAMA_DEFAULT_TARGETS);
  const layers_to_transform = c.layers();
  c.checkLayersWithRegex(target_modules, layers_to_transform);
  const modules_to_save = u.modules_to_save;
  if (modules_to_save !== null && !(Array.isArray(modules_to_save) && modules_to_save.length === 0)) {
    c.bad("modules_to_save", `is not supported with LoRA yet (got ${JSON.stringify(modules_to_save)}); train whole modules with peft_type "PARTIAL"`);
  }
  return {
    ...c.extras(),
    ...c.common(),
    peft_type: "LORA",
    r: r as number,
    lora_alpha: alpha as number,
    lora_dropout: dropout as number,
    target_modules,
    layers_to_transform,
    bias: "none",
    use_rslora,
    use_dora,
    init_lora_weights: init as InitLoraWeights,
    modules_to_save: null,
    fan_in_fan_out: false,
  };
}

/** The factor on B·A: alpha / r, or alpha / sqrt(r) with rsLoRA (Kalajdzievski 2023). */
export function loraScale(cfg: Pick<LoraConfig, "lora_alpha" | "r" | "use_rslora">): number {
  return cfg.use_rslora ? cfg.lora_alpha / Math.sqrt(cfg.r) : cfg.lora_alpha / cfg.r;
}
