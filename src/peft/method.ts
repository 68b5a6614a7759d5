/**
 * The one interface every PEFT method implements (HF PEFT keeps a method in
 * tuners/<method>/{config,layer,model}.py; here a method is src/peft/<method>/). Everything
 * else — the adapter object, save/load, the trainer, optimizers, checkpoints, the memory
 * planner, merging, the registry of served adapters — sees only "parameters with PEFT keys and
 * hooks", never A and B.
 *
 *   normalize  PEFT's config keys and defaults; a PeftError naming a bad key
 *   layout     the method's tensors for a model: PEFT on-disk keys, shapes, q/k row order
 *   init       seeded initial values (same seed, same bytes)
 *   hooks      what the method does at the block's hook sites (model/sites.ts), written as graph
 *              ops, so the backward and the CPU reference come with it
 *   merge      how the method folds into base weights, or why it cannot
 */
import type { Backend } from "../model/backend.ts";
import type { LlamaConfig } from "../model/config.ts";
import type { Param } from "../model/graph.ts";
import type { Hooks } from "../model/sites.ts";

/** A method config: PEFT's adapter_config.json keys (snake_case), normalized. */
export interface MethodConfig {
  peft_type: string;
  [key: string]: unknown;
}

export interface ParamLayout {
  /** PEFT on-disk key, e.g. base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight. */
  key: string;
  shape: number[];
  /**
   * Rows follow q/k heads (lora_B or DoRA magnitudes of q_proj/k_proj, (IA)³ vectors of k_proj):
   * kept in GGUF's adjacent-pair order in memory, written in HF's rotate-half order on disk.
   */
  qkRows?: boolean;
  /** Any other GGUF <-> HF reordering of the values (prefix tuning's key columns). */
  reorder?: (data: Float32Array, direction: "hf_to_gguf" | "gguf_to_hf") => Float32Array;
}

/** What methods may need from above the peft layer when they initialise (prompt tuning's init text). */
export interface InitContext {
  /** Text -> token ids as the model's tokenizer encodes it (BOS included, as HF tokenizers add it). */
  tokenize?: (text: string) => number[];
  /** The adapter's seed (for draws that depend on the base model, e.g. sampled vocabulary rows). */
  seed?: number;
}

/** How an adapter's directory is laid out when the method's ecosystem differs from PEFT's (AdapterHub). */
export interface DirFormat<C extends MethodConfig> {
  weightsFile: string;
  /** adapter_config.json's content for a config. */
  toJson(config: C): Record<string, unknown>;
}

/** An adapter's parameters by PEFT key, on some backend. */
export interface ParamStore<T> {
  get(key: string): Param<T>;
}

/** How a method folds into base weights. */
export interface MergeRule<C extends MethodConfig> {
  /** GGUF names of the base weights (linears or norms) the merge replaces. */
  targets(config: C, model: LlamaConfig): string[];
  /**
   * The merged value of base weight `name`, given its current value W as an f32 tensor
   * ([out, in] linears, [dim] norms). May write W in place and return it, or return a new tensor
   * (the caller then releases W).
   */
  apply<T>(config: C, be: Backend<T>, name: string, W: T, params: ParamStore<T>, model: LlamaConfig): T;
}

export interface PeftMethod<C extends MethodConfig = MethodConfig> {
  /** PEFT's peft_type ("LORA", "IA3", "LN_TUNING"), or ours where PEFT has none ("BITFIT", "PARTIAL"). */
  readonly peftType: string;
  /** PEFT's keys and defaults; `model` fills what PEFT derives from the base model (token_dim, num_layers). */
  normalize(user: Record<string, unknown>, model?: LlamaConfig): C;
  layout(config: C, model: LlamaConfig): ParamLayout[];
  /** Initial values (GGUF row order) for every layout key, from the seed. */
  init(config: C, model: LlamaConfig, seed: number): Map<string, Float32Array>;
  /** Values that depend on the base weights, computed on the device after `init` (DoRA magnitudes). */
  initFromBase?<T>(config: C, model: LlamaConfig, be: Backend<T>, params: ParamStore<T>, ctx: InitContext): void;
  /**
   * What PEFT saves when it is not the trained parameters themselves (P-tuning saves its prompt
   * encoder's output, prefix tuning with a projection the projected prefix): the config of that
   * saved form (inference_mode true, which loads as `layout` of it) and its values.
   */
  export?: {
    config(config: C): C;
    values<T>(config: C, model: LlamaConfig, params: ParamStore<T>, be: Backend<T>): Map<string, T>;
  };
  /** A directory format other than PEFT's. */
  dir?: DirFormat<C>;
  /**
   * The method's hooks over `params`. `weight` scales the adapter's effect when several adapters
   * are combined (LoRA's delta); methods whose effect is not a delta refuse weight != 1.
   */
  hooks<T>(config: C, model: LlamaConfig, params: ParamStore<T>, weight: number): Hooks<T>;
  /** Merging into the base weights; absent: `cannotMerge` says why. */
  merge?: MergeRule<C>;
  cannotMerge?: string;
  /** A one-line description for errors and listings. */
  describe(config: C): string;
  /** The method's short name for titles ("LoRA", "DoRA", "(IA)³"). */
  label(config: C): string;
}
