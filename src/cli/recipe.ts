/**
 * Training recipes from one YAML file (`train --config recipe.yaml`, `distill --config ...`), read
 * as LLaMA-Factory reads its files: its keys (and transformers' TrainingArguments keys) map onto
 * this CLI's flags, and every flag also has a key of its own (the flag's name with underscores:
 * `seq_len`, `peft_type`). Flags on the command line override the file. Keys the file leaves out
 * take LLaMA-Factory's defaults where those differ from this CLI's (learning_rate 5e-5,
 * num_train_epochs 3, cutoff_len 2048, lora_alpha 2·lora_rank, lora_dropout 0, lora_target all,
 * double_quantization true, save_steps 500), so a file means here what it means there.
 *
 * Unknown keys are one error listing each with the nearest known key (a warning with
 * --allow-unknown); keys LLaMA-Factory knows that this runtime does not support (deepspeed, ...)
 * say so; keys with no effect here (report_to, logging_steps, ...) are noted; a wrong type or a
 * contradiction names the key. The resolved flags are written back as config.resolved.yaml, which
 * reruns the same training on its own.
 */
import { readFile } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { PeftError } from "../errors.ts";
import { writeFileAtomic } from "../io/bytes.ts";
import { type Command, convertValue, editDistance, type Flag, parseFlags } from "./flags.ts";

/** What the recipe's `stage` must be for the command: sft/pt for train, kd for distill. */
export type Stage = "train" | "kd";

/** Our flag for each LLaMA-Factory / transformers / TRL key that is a plain rename. */
const RENAMED: Record<string, string> = {
  model_name_or_path: "model", adapter_name_or_path: "init-adapter", lora_rank: "r", cutoff_len: "seq-len", max_samples: "max-examples",
  output_dir: "out", per_device_train_batch_size: "batch-size", gradient_accumulation_steps: "grad-accum", learning_rate: "lr",
  num_train_epochs: "epochs", lr_scheduler_type: "lr-scheduler", evaluation_strategy: "eval-strategy", early_stopping_steps: "early-stopping-patience",
  dataset: "data", teacher_model_name_or_path: "teacher",
};

/** Keys with no effect on the result here, and why. */
const IGNORED: Record<string, string> = {
  logging_steps: "every step is logged", report_to: "metrics go to metrics.jsonl", run_name: "no tracker", logging_dir: "metrics go to --out",
  plot_loss: "loss.svg is always written", overwrite_output_dir: "checkpoints in --out are replaced", overwrite_cache: "no cache",
  preprocessing_num_workers: "one process", preprocessing_batch_size: "one process", dataloader_num_workers: "one process", ddp_timeout: "one device",
  trust_remote_code: "no remote code", do_train: "train always trains", do_eval: "--eval-fraction decides", per_device_eval_batch_size: "evaluation uses --batch-size",
  flash_attn: "one attention kernel", disable_tqdm: "progress goes to stdout", include_num_input_tokens_seen: "tokens/s is logged", bf16_full_eval: "evaluation computes in f32",
  save_only_model: "checkpoints hold the adapter and the optimizer state", dataloader_pin_memory: "no host pinning", data_seed: "--seed orders the data",
  quantization_device_map: "one device", infer_backend: "not an inference run", cache_dir: "models are local files", hf_hub_token: "no downloads",
};

/** LLaMA-Factory keys this runtime cannot honour, and why; `harmless` values (the defaults) are accepted. */
const UNSUPPORTED: Record<string, { why: string; harmless?: unknown[] }> = {
  deepspeed: { why: "one device, no ZeRO sharding (its JSON may also set the optimizer and precision)" },
  fsdp: { why: "one device" }, fsdp_config: { why: "one device" },
  use_unsloth: { why: "Unsloth's kernels are CUDA", harmless: [false] }, enable_liger_kernel: { why: "Liger's kernels are CUDA", harmless: [false] },
  pure_bf16: { why: "no bf16 arithmetic in WebGPU", harmless: [false] }, tf32: { why: "no tf32 in WebGPU", harmless: [false, null] },
  torch_compile: { why: "no torch", harmless: [false] }, use_galore: { why: "no GaLore", harmless: [false] }, use_apollo: { why: "no APOLLO", harmless: [false] },
  use_badam: { why: "no BAdam", harmless: [false] }, use_adam_mini: { why: "no Adam-mini", harmless: [false] }, use_muon: { why: "no Muon", harmless: [false] },
  loraplus_lr_ratio: { why: "one learning rate for every adapter tensor", harmless: [null] }, pissa_init: { why: "LoRA init is PEFT's kaiming/zeros", harmless: [false] },
  additional_target: { why: "only the adapter's own tensors train", harmless: [null] }, freeze_extra_modules: { why: "embeddings and the head stay frozen", harmless: [null] },
  create_new_adapter: { why: "adapter_name_or_path continues that adapter", harmless: [false] }, use_llama_pro: { why: "no block expansion", harmless: [false] },
  neftune_noise_alpha: { why: "no embedding noise", harmless: [null, 0] }, rope_scaling: { why: "the model's own RoPE", harmless: [null] },
  shift_attn: { why: "full attention only", harmless: [false] }, neat_packing: { why: "packed records attend to each other", harmless: [false] },
  train_on_prompt: { why: "the prompt is always masked", harmless: [false] }, mask_history: { why: "every assistant turn is trained", harmless: [false] },
  streaming: { why: "the data file is read whole", harmless: [false] }, eval_dataset: { why: "evaluation holds out --eval-fraction of --data" },
  mix_strategy: { why: "one dataset", harmless: ["concat"] }, interleave_probs: { why: "one dataset" }, tokenized_path: { why: "data is tokenized each run" },
  new_special_tokens: { why: "the vocabulary is the model's", harmless: [null] }, resize_vocab: { why: "the vocabulary is the model's", harmless: [false] },
  upcast_layernorm: { why: "norms compute in f32 already", harmless: [false, true] }, upcast_lmhead_output: { why: "the head computes in f32", harmless: [false, true] },
  label_smoothing_factor: { why: "plain cross-entropy", harmless: [0] }, lmbda: { why: "no on-policy generation (GKD's lmbda): the student learns on the data", harmless: [0] },
  seq_kd: { why: "no teacher generation", harmless: [false] }, ref_model: { why: "no preference training" }, reward_model: { why: "no preference training" },
  optim_target_modules: { why: "no GaLore", harmless: [null] },
};

const optimizers: Record<string, string> = {
  adamw_torch: "adamw", adamw_torch_fused: "adamw", adamw_hf: "adamw", adamw: "adamw", paged_adamw_32bit: "paged_adamw", paged_adamw: "paged_adamw",
  adamw_8bit: "adamw_8bit", adamw_bnb_8bit: "adamw_8bit", paged_adamw_8bit: "adamw_8bit",
};

/** LLaMA-Factory's names for groups of modules (freeze_trainable_modules) as our module names. */
const MODULE_GROUPS: Record<string, string> = {
  self_attn: "q_proj,k_proj,v_proj,o_proj", mlp: "gate_proj,up_proj,down_proj", all: "all",
};

/** Keys with meanings beyond a rename: they are read together by `special()`. */
const SPECIAL = [
  "finetuning_type", "use_dora", "freeze_trainable_layers", "freeze_trainable_modules", "lora_target", "quantization_bit", "quantization_type",
  "double_quantization", "quantization_method", "fp16", "bf16", "optim", "stage", "template", "max_steps", "val_size", "resume_from_checkpoint",
  "dataset_dir", "disable_gradient_checkpointing", "greater_is_better", "teacher_adapter_name_or_path",
];

export interface Recipe {
  /** Flag values set by the file, converted. */
  values: Record<string, unknown>;
  /** The key that set each flag (for messages). */
  keyOf: Record<string, string>;
  /** Lines to print: keys ignored, defaults taken, mappings worth saying. */
  notes: string[];
}

/** The YAML key of a flag: its name with underscores. */
export function keyOfFlag(flag: string): string {
  return flag.replace(/-/g, "_");
}

function isNumeric(v: unknown): boolean {
  return typeof v === "number" || (typeof v === "string" && v.trim() !== "" && Number.isFinite(Number(v)));
}

/** Reads and checks a recipe against the command's flags. */
export async function readRecipe(path: string, cmd: Command, stage: Stage, o: { allowUnknown: boolean }): Promise<Recipe> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new PeftError("FILE_NOT_FOUND", `--config ${path}: ${(e as { code?: string }).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new PeftError("CONFIG_INVALID", `${path}: not valid YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new PeftError("CONFIG_INVALID", `${path}: expected a mapping of keys to values, got ${Array.isArray(doc) ? "a list" : JSON.stringify(doc)}`);
  return mapRecipe(path, doc as Record<string, unknown>, cmd, stage, o);
}

/** The file's keys as flag values (see readRecipe). Exported for tests. */
export function mapRecipe(path: string, doc: Record<string, unknown>, cmd: Command, stage: Stage, o: { allowUnknown: boolean }): Recipe {
  const out: Recipe = { values: {}, keyOf: {}, notes: [] };
  const bad = (key: string, m: string) => new PeftError("CONFIG_INVALID", `${path}: ${key}: ${m}`);
  const set = (key: string, flag: string, raw: unknown) => {
    if (!Object.hasOwn(cmd.flags, flag)) throw bad(key, `${cmd.name} has no --${flag}`);
    if (out.keyOf[flag] !== undefined) throw bad(key, `sets --${flag}, and so does ${out.keyOf[flag]}: give one of them`);
    out.values[flag] = typed(key, cmd.flags[flag], raw, bad);
    out.keyOf[flag] = key;
  };
  const unknown: string[] = [], unsupported: string[] = [], ignored: string[] = [];
  const ownKeys = new Map(Object.keys(cmd.flags).filter((f) => !["config", "allow-unknown"].includes(f)).map((f) => [keyOfFlag(f), f]));
  for (const [key, value] of Object.entries(doc)) {
    if (SPECIAL.includes(key)) continue;
    if (Object.hasOwn(RENAMED, key)) set(key, RENAMED[key], value);
    else if (ownKeys.has(key)) set(key, ownKeys.get(key)!, value);
    else if (Object.hasOwn(IGNORED, key)) ignored.push(`${key} (${IGNORED[key]})`);
    else if (Object.hasOwn(UNSUPPORTED, key)) {
      const u = UNSUPPORTED[key];
      if (!u.harmless?.some((h) => h === value)) unsupported.push(`${key}: ${JSON.stringify(value)} is not supported here (${u.why})`);
    } else unknown.push(key);
  }
  special(doc, out, set, bad, stage, cmd);
  const known = [...Object.keys(RENAMED), ...ownKeys.keys(), ...SPECIAL, ...Object.keys(IGNORED), ...Object.keys(UNSUPPORTED)];
  const problems = [
    ...unknown.map((k) => `unknown key ${k}${nearest(k, known)}`),
    ...unsupported,
  ];
  if (problems.length) {
    const m = `${path}: ${problems.join("; ")}`;
    if (!o.allowUnknown) throw new PeftError("CONFIG_INVALID", `${m} (--allow-unknown makes these warnings)`);
    console.warn(`[config] warning: ${m}; ignored (--allow-unknown)`);
  }
  if (ignored.length) out.notes.push(`[config] no effect here: ${ignored.join(", ")}`);
  return out;
}

/** " (did you mean lora_rank?)" for the nearest known key. */
function nearest(key: string, known: string[]): string {
  let best: { k: string; d: number } | undefined;
  for (const k of known) {
    const d = k.startsWith(key) || key.startsWith(k) ? Math.min(editDistance(key, k), 2) : editDistance(key, k);
    if (d <= Math.max(2, Math.floor(k.length / 3)) && (!best || d < best.d)) best = { k, d };
  }
  return best ? ` (did you mean ${best.k}?)` : "";
}

/** A YAML value as the flag's type (numbers may be quoted, as PyYAML leaves 1e-4; booleans true/false). */
function typed(key: string, flag: Flag, raw: unknown, bad: (key: string, m: string) => PeftError): unknown {
  if (flag.type === "boolean") {
    if (typeof raw === "boolean") return raw;
    if (typeof raw === "string" && /^(true|false)$/i.test(raw)) return raw.toLowerCase() === "true";
    throw bad(key, `must be true or false, got ${JSON.stringify(raw)}`);
  }
  if (raw === null || typeof raw === "object") throw bad(key, `must be ${flag.type === "string" ? "a string" : "a number"}, got ${JSON.stringify(raw)}`);
  if ((flag.type === "int" || flag.type === "number") && !isNumeric(raw)) throw bad(key, `must be a number, got ${JSON.stringify(raw)}`);
  if (flag.type === "string" && typeof raw === "boolean") throw bad(key, `must be a string, got ${raw}`);
  try {
    return convertValue(key, flag, String(raw));
  } catch (e) {
    // "key must be >= 1, got 0" -> "file: key: must be >= 1, got 0"
    throw e instanceof PeftError ? bad(key, e.message.slice(key.length).replace(/^:?\s*/, "")) : e;
  }
}

type Setter = (key: string, flag: string, raw: unknown) => void;

/** The keys whose meaning spans several flags or values. */
function special(doc: Record<string, unknown>, out: Recipe, set: Setter, bad: (key: string, m: string) => PeftError, stage: Stage, cmd: Command): void {
  const has = (k: string) => Object.hasOwn(doc, k);
  const bool = (k: string): boolean | undefined => {
    if (!has(k)) return undefined;
    const v = doc[k];
    if (typeof v === "boolean") return v;
    if (typeof v === "string" && /^(true|false)$/i.test(v)) return v.toLowerCase() === "true";
    throw bad(k, `must be true or false, got ${JSON.stringify(v)}`);
  };
  const str = (k: string): string | undefined => {
    if (!has(k) || doc[k] === null) return undefined;
    if (typeof doc[k] !== "string" && typeof doc[k] !== "number") throw bad(k, `must be a string, got ${JSON.stringify(doc[k])}`);
    return String(doc[k]);
  };

  // stage: sft / pt train (next-token loss on the data's targets); kd distills.
  const stageValue = str("stage");
  if (stageValue !== undefined) {
    const ok = stage === "kd" ? ["kd"] : ["sft", "pt"];
    if (!ok.includes(stageValue)) {
      const hint = stageValue === "kd" ? "run it with distill --config" : ["sft", "pt"].includes(stageValue) ? "run it with train --config" : "this runtime trains sft/pt (train) and kd (distill)";
      throw bad("stage", `${JSON.stringify(stageValue)} is not a ${cmd.name} stage: ${hint}`);
    }
  }

  // finetuning_type (+ use_dora, freeze_*): our --peft-type and layer selection.
  const ft = str("finetuning_type");
  const dora = bool("use_dora");
  if (ft !== undefined && !["lora", "freeze", "full"].includes(ft)) throw bad("finetuning_type", `${JSON.stringify(ft)} is not supported here: lora, freeze or full`);
  if (dora && ft !== undefined && ft !== "lora") throw bad("use_dora", `is a LoRA setting; finetuning_type is ${ft}`);
  if (ft === "freeze" || ft === "full") {
    for (const k of ["lora_rank", "lora_alpha", "lora_dropout", "lora_target", "use_rslora"]) if (has(k)) throw bad(k, `is a LoRA setting; finetuning_type is ${ft}`);
    if (ft === "full") {
      out.notes.push("[config] finetuning_type full: every block linear and norm trains (--peft-type full); the embeddings, final norm and head stay frozen");
      set("finetuning_type", "peft-type", "full");
    } else {
      set("finetuning_type", "peft-type", "partial");
      const n = has("freeze_trainable_layers") ? Number(doc.freeze_trainable_layers) : 2;
      if (!Number.isInteger(n) || n === 0) throw bad("freeze_trainable_layers", `must be a non-zero whole number (last N layers, or -N for the first N), got ${JSON.stringify(doc.freeze_trainable_layers)}`);
      if (n > 0) set("freeze_trainable_layers", "last-layers", n);
      else set("freeze_trainable_layers", "layers", Array.from({ length: -n }, (_, i) => i).join(","));
      const mods = (str("freeze_trainable_modules") ?? "all").split(",").map((m) => m.trim()).map((m) => MODULE_GROUPS[m] ?? m).join(",");
      set("freeze_trainable_modules", "target-modules", mods);
    }
  } else {
    for (const k of ["freeze_trainable_layers", "freeze_trainable_modules"]) if (has(k)) throw bad(k, `is a setting of finetuning_type freeze; finetuning_type is ${ft ?? "lora (the default)"}`);
    if (dora) set("use_dora", "peft-type", "dora");
    else if (ft === "lora") set("finetuning_type", "peft-type", "lora");
  }
  const lt = str("lora_target");
  if (lt !== undefined) set("lora_target", "target-modules", lt === "all" ? "all-linear" : lt);

  // quantization_bit 4 + quantization_type + double_quantization: QLoRA's 4-bit base.
  if (has("quantization_bit") && doc.quantization_bit !== null) {
    if (doc.quantization_bit !== 4 && doc.quantization_bit !== "4") {
      throw bad("quantization_bit", `${JSON.stringify(doc.quantization_bit)} is not supported: 4 only (bitsandbytes NF4/FP4)`);
    }
    const method = str("quantization_method") ?? "bitsandbytes";
    if (!["bitsandbytes", "bnb"].includes(method)) throw bad("quantization_method", `${JSON.stringify(method)} is not supported: bitsandbytes only`);
    const type = str("quantization_type") ?? "nf4";
    if (!["nf4", "fp4"].includes(type)) throw bad("quantization_type", `must be nf4 or fp4, got ${JSON.stringify(type)}`);
    set("quantization_bit", "quantize", type);
    set("double_quantization", "double-quant", bool("double_quantization") ?? true); // LLaMA-Factory's default: on
  } else {
    for (const k of ["quantization_type", "double_quantization", "quantization_method"]) {
      if (has(k) && !(k === "double_quantization" && doc[k] === true) && !(k === "quantization_method" && doc[k] === "bitsandbytes")) {
        throw bad(k, "needs quantization_bit: 4");
      }
    }
  }

  // fp16 / bf16: the base matmuls' compute dtype. WebGPU has no bf16: bf16 takes the half type the
  // GPU has (f16 with dynamic loss scaling where shader-f16 exists, else f32).
  const fp16 = bool("fp16"), bf16 = bool("bf16");
  if (fp16 && bf16) throw bad("bf16", "fp16 and bf16 are both true: give one");
  if (fp16) set("fp16", "compute-dtype", "f16");
  if (bf16) {
    set("bf16", "compute-dtype", "auto");
    out.notes.push("[config] bf16: WebGPU has no bf16 arithmetic; computing in f16 (with dynamic loss scaling) where the GPU has shader-f16, else f32");
  }

  const optim = str("optim");
  if (optim !== undefined) {
    if (!Object.hasOwn(optimizers, optim)) throw bad("optim", `${JSON.stringify(optim)} is not supported: ${Object.keys(optimizers).join(", ")}`);
    set("optim", "optimizer", optimizers[optim]);
    if (optim === "paged_adamw_8bit") out.notes.push("[config] optim paged_adamw_8bit: adamw_8bit here (the same 8-bit updates; the state stays on the GPU, a quarter of AdamW's)");
  }

  const template = str("template");
  if (template !== undefined) {
    const chatml = ["qwen", "qwen2", "qwen2_5", "qwen3", "chatml", "yi", "chatml_de"];
    const t = chatml.includes(template) ? "chatml" : template;
    if (!["chatml", "plain"].includes(t) && !/\.(jinja|j2|txt)$/.test(t)) {
      throw bad("template", `${JSON.stringify(template)} is not known here: qwen (ChatML), chatml, plain, or a Jinja file (.jinja)`);
    }
    set("template", "chat-template", t);
  }

  // transformers' max_steps -1 means "not set"
  if (has("max_steps") && !(Number(doc.max_steps) <= 0)) set("max_steps", "max-steps", doc.max_steps);
  if (has("val_size")) {
    const v = Number(doc.val_size);
    if (!isNumeric(doc.val_size) || v < 0) throw bad("val_size", `must be a fraction in [0, 1), got ${JSON.stringify(doc.val_size)}`);
    if (v >= 1) throw bad("val_size", `${v} examples: a count is not supported here; give a fraction in [0, 1)`);
    set("val_size", "eval-fraction", v);
  }
  const resume = doc.resume_from_checkpoint;
  if (has("resume_from_checkpoint") && resume !== null && resume !== false) set("resume_from_checkpoint", resume === true ? "resume" : "resume-from", resume);
  const dir = str("dataset_dir");
  if (dir !== undefined && out.values.data !== undefined && !isAbsolute(String(out.values.data))) out.values.data = join(dir, String(out.values.data));
  if (dir !== undefined && out.values.data === undefined) throw bad("dataset_dir", "needs dataset (a file in it)");
  if (typeof out.values.data === "string" && out.values.data.includes(",")) throw bad("dataset", "several datasets are not supported: give one file");
  if (bool("disable_gradient_checkpointing") === false && !has("gradient_checkpointing")) set("disable_gradient_checkpointing", "gradient-checkpointing", true);
  if (bool("greater_is_better")) throw bad("greater_is_better", "eval_loss is the only metric: lower is better");
  if (has("teacher_adapter_name_or_path")) set("teacher_adapter_name_or_path", "teacher-adapter", doc.teacher_adapter_name_or_path);
}

/**
 * LLaMA-Factory's defaults for the flags neither the command line nor the file set, where they
 * differ from this CLI's. `set` says which flags were set. Returns the lines to print.
 */
export function applyRecipeDefaults(v: Record<string, unknown>, set: Set<string>): string[] {
  const taken: string[] = [];
  const take = (flag: string, value: unknown, key: string) => {
    if (set.has(flag)) return;
    v[flag] = value;
    taken.push(`${key} ${value}`);
  };
  take("lr", 5e-5, "learning_rate");
  if (!set.has("max-steps")) take("epochs", 3, "num_train_epochs");
  take("seq-len", 2048, "cutoff_len");
  take("eval-fraction", 0, "val_size");
  take("save-steps", 500, "save_steps");
  if (v["peft-type"] === "lora" || v["peft-type"] === "dora") {
    take("lora-alpha", 2 * Number(v.r), "lora_alpha (2·lora_rank)");
    take("lora-dropout", 0, "lora_dropout");
    if (!v["init-adapter"]) take("target-modules", "all-linear", "lora_target (all)");
  }
  if (v.quantize !== undefined) take("double-quant", true, "double_quantization");
  return taken.length ? [`[config] keys the file leaves out take LLaMA-Factory's defaults: ${taken.join(", ")}`] : [];
}

/**
 * Writes the values of every flag (our keys) to `path` atomically, as a recipe that reruns the
 * same training (`config`, `allow-unknown` and `resume` left out).
 */
export async function writeResolvedConfig(path: string, cmd: Command, v: Record<string, unknown>, source: string): Promise<void> {
  const doc: Record<string, unknown> = {};
  for (const flag of Object.keys(cmd.flags)) {
    if (["config", "allow-unknown", "resume", "resume-from"].includes(flag) || v[flag] === undefined) continue;
    doc[keyOfFlag(flag)] = v[flag];
  }
  const header = `# ${cmd.name}: every setting of the run (${source}); rerun with: ${cmd.name} --config <this file>\n`;
  await writeFileAtomic(path, new TextEncoder().encode(header + stringifyYaml(doc)));
}

/**
 * parseFlags with a recipe: `--config <file>` is read first (its values sit between the command
 * line and the defaults), then LLaMA-Factory's defaults fill what neither set. `given` holds the
 * flags the command line or the file set; `source` says where the values came from.
 */
export async function parseWithRecipe<C extends Command>(cmd: C, args: readonly string[], stage: Stage) {
  const path = args.some((a) => a === "-h" || a === "--help") ? undefined : configArgument(args);
  const recipe = path ? await readRecipe(path, cmd, stage, { allowUnknown: args.includes("--allow-unknown") }) : undefined;
  const f = parseFlags(cmd, args, recipe?.values);
  if (!f) return null;
  const given = new Set([...f.given, ...Object.keys(recipe?.values ?? {})]);
  if (recipe) for (const line of [...recipe.notes, ...applyRecipeDefaults(f.values as Record<string, unknown>, given)]) console.log(line);
  const cli = [...f.given].filter((g) => g !== "config" && g !== "allow-unknown");
  const source = path ? `${path}${cli.length ? ` with ${cli.map((g) => `--${g}`).join(" ")}` : ""}` : "command-line flags";
  return { values: f.values, given, source };
}

/** `--config <path>` (or `--config=<path>`) among the arguments, before they are parsed. */
export function configArgument(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--config") return args[i + 1];
    if (args[i].startsWith("--config=")) return args[i].slice("--config=".length);
  }
  return undefined;
}
