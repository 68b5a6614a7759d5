/**
 * `train --model <gguf|hf dir> --data <txt|jsonl> --out <dir> [flags]` or `train --config recipe.yaml`:
 * fine-tuning with any PEFT method (--peft-type lora|dora|ia3|bitfit|ln_tuning|partial) and a
 * progress bar; writes config.resolved.yaml, metrics.jsonl, loss.svg, checkpoints and the final
 * adapter (HF PEFT format) into --out. Flags mirror train()'s options and PEFT's LoraConfig; the
 * defaults below are what the CLI passes (the API's own defaults are transformers'); a recipe file
 * is read as LLaMA-Factory reads it (recipe.ts).
 */
import { mkdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { fourBitPayload } from "../quant/mod.ts";
import { STRATEGIES, type Strategy, train, type TrainOptions } from "../train/trainer.ts";
import { LR_SCHEDULERS, type LrSchedulerName } from "../train/schedule.ts";
import { type OptimizerName, OPTIMIZERS } from "../train/paged_adamw.ts";
import type { Model } from "../api/model.ts";
import { chatTemplateFlag, resolveChatTemplate } from "./chat_template_flag.ts";
import { type Command, type FlagValues, usageError } from "./flags.ts";
import { parseWithRecipe, writeResolvedConfig } from "./recipe.ts";
import { loadModelFromFlags, MODEL_FLAGS } from "./model_flags.ts";

/** Evaluations on the CLI use at most this many batches unless --max-eval-batches says otherwise. */
export const CLI_EVAL_BATCHES = 8;

const method = "method", lora = "LoRA / DoRA", data = "data", optim = "optimization", run = "run", recipe = "recipe";

export const PEFT_TYPES = ["lora", "dora", "ia3", "bitfit", "ln_tuning", "partial", "full", "prompt_tuning", "p_tuning", "prefix_tuning", "bottleneck", "mam"] as const;

export const TRAIN = {
  name: "train",
  summary: "fine-tune an adapter (LoRA, DoRA, (IA)³, BitFit, LN tuning, partial); writes metrics.jsonl, loss.svg, checkpoint-N/ and adapter/ into --out",
  usage: "--model <path.gguf|hf-dir> --data <file.txt|file.jsonl> --out <dir> [flags]   or   --config <recipe.yaml> [flags]",
  flags: {
    config: {
      type: "string", value: "<recipe.yaml>", group: recipe,
      description: "a YAML recipe: LLaMA-Factory's keys (model_name_or_path, finetuning_type, lora_rank, cutoff_len, ...) or these flags' names with underscores; flags given here win",
    },
    "allow-unknown": { type: "boolean", group: recipe, description: "with --config: warn about unknown and unsupported keys instead of refusing the file" },
    ...MODEL_FLAGS,
    data: {
      type: "string", required: true, value: "<file.txt|file.jsonl>", group: data,
      description: 'plain text, or JSONL of {"text"}, {"prompt","completion"} (loss on the completion) or {"messages"} (loss on assistant turns)',
    },
    out: { type: "string", required: true, value: "<dir>", group: data, aliases: ["output-dir", "adapter-path"], description: "output directory (created); --resume continues from its latest checkpoint" },
    "seq-len": { type: "int", default: 256, min: 1, units: "tokens", group: data, aliases: ["max-seq-length", "max-length"], description: "tokens per training sequence" },
    stride: { type: "int", min: 1, defaultText: "--seq-len", units: "tokens", group: data, description: "plain text: distance between window starts (less than --seq-len overlaps)" },
    "max-examples": { type: "int", min: 1, defaultText: "all", group: data, description: "use at most this many sequences (text) or records (JSONL) from the start of the file" },
    "eval-fraction": { type: "number", default: 0.05, min: 0, max: 0.99, group: data, description: "share of the data held out for evaluation (the end of a text file); 0 = no evaluation" },
    "max-eval-batches": {
      type: "int", default: CLI_EVAL_BATCHES, min: 0, units: "batches", group: data, aliases: ["val-batches", "max-eval-samples", "eval-batches"],
      description: "each evaluation uses the first N batches of the held-out split; 0 = all of it (slow on a software GPU)",
    },
    packing: { type: "boolean", group: data, description: "JSONL: pack short records into full sequences" },
    "group-by-length": { type: "boolean", group: data, description: "batches of similar lengths (transformers' length-grouped order), each cut to its longest row" },
    "chat-template": chatTemplateFlag(data, 'for {"messages"} records'),
    "peft-type": {
      type: "string", choices: PEFT_TYPES, default: "lora", group: method, aliases: ["method", "finetuning-type", "finetuning_type"],
      description: "lora; dora (LoRA + magnitude); ia3 (scaling vectors); bitfit (biases); ln_tuning (norm weights); partial (whole modules); full (partial over every block weight and norm; embeddings stay frozen); " +
        "prompt_tuning / p_tuning (virtual tokens); prefix_tuning (key/value prefixes); bottleneck (adapter modules); mam (prefix + parallel adapter)",
    },
    "num-virtual-tokens": { type: "int", default: 20, min: 1, units: "tokens", group: method, description: "prompt_tuning, p_tuning, prefix_tuning, mam: virtual tokens (they use context)" },
    "prompt-init": {
      type: "string", choices: ["random", "sample_vocab", "text"], default: "random", group: method,
      description: "prompt_tuning: initial embeddings (text: those of --prompt-init-text, repeated)",
    },
    "prompt-init-text": { type: "string", value: '"text"', group: method, description: "prompt_tuning with --prompt-init text" },
    "encoder-type": { type: "string", choices: ["mlp", "lstm"], default: "mlp", group: method, description: "p_tuning: the prompt encoder" },
    "encoder-hidden-size": { type: "int", min: 1, defaultText: "the token width", group: method, description: "p_tuning, prefix_tuning (with --prefix-projection): encoder width" },
    "prefix-projection": { type: "boolean", group: method, description: "prefix_tuning: learn the prefix through PEFT's Linear·Tanh·Linear projection" },
    bottleneck: {
      type: "string", choices: ["seq_bn", "double_seq_bn", "par_bn"], default: "seq_bn", group: method,
      description: "bottleneck: Pfeiffer (after the FFN), Houlsby (after attention and FFN) or parallel (beside the FFN)",
    },
    "reduction-factor": { type: "number", min: 1, defaultText: "16 (par_bn: 2)", group: method, description: "bottleneck, mam: hidden size / bottleneck size" },
    "target-modules": {
      type: "string", defaultText: "per method: lora/dora q_proj,v_proj; ia3 k_proj,v_proj,down_proj; bitfit all-linear; ln_tuning every norm; partial all",
      value: "<m1,m2,...|all-linear|all>", group: method, aliases: ["lora-layers", "targets", "lora-target"],
      description: "modules to adapt: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj, all-linear; norms input_layernorm post_attention_layernorm norm; partial also all",
    },
    "feedforward-modules": { type: "string", defaultText: "down_proj", value: "<m1,m2,...>", group: method, description: "ia3: modules scaled at their input (the others at their output)" },
    layers: { type: "string", defaultText: "all", value: "<i,j,...>", group: method, aliases: ["layers-to-transform"], description: "adapt only these layer indices (PEFT's layers_to_transform)" },
    "last-layers": { type: "int", min: 1, defaultText: "all", group: method, description: "adapt only the last N layers (partial: fine-tune the top of the model)" },
    r: { type: "int", default: 8, min: 1, group: lora, aliases: ["rank", "lora-r", "lora-rank"], description: "LoRA rank: inner size of the low-rank update B·A" },
    "lora-alpha": { type: "number", default: 16, min: 0, group: lora, aliases: ["alpha"], description: "LoRA scale numerator: updates are scaled by alpha/r (alpha/sqrt(r) with --use-rslora)" },
    "lora-dropout": { type: "number", default: 0.05, min: 0, max: 0.99, group: lora, aliases: ["dropout"], description: "dropout on the LoRA input during training" },
    "use-rslora": { type: "boolean", group: lora, description: "rank-stabilized scale alpha/sqrt(r)" },
    "init-adapter": { type: "string", value: "<peft-dir>", group: method, description: "continue training an existing adapter of any method (its config replaces --peft-type, --r, ...)" },
    "batch-size": { type: "int", default: 8, min: 1, units: "sequences", group: optim, aliases: ["batch", "per-device-train-batch-size"], description: "sequences per micro-batch" },
    "grad-accum": { type: "int", default: 1, min: 1, units: "micro-batches", group: optim, aliases: ["gradient-accumulation-steps", "grad-accumulation"], description: "micro-batches summed per optimizer step" },
    lr: { type: "number", default: 2e-4, min: 0, group: optim, aliases: ["learning-rate"], description: "peak learning rate" },
    "lr-scheduler": { type: "string", choices: LR_SCHEDULERS, default: "linear", group: optim, aliases: ["lr-scheduler-type", "lr-schedule"], description: "learning-rate schedule after warmup" },
    "warmup-ratio": { type: "number", default: 0, min: 0, max: 1, group: optim, description: "share of the steps spent warming up (overridden by --warmup-steps)" },
    "warmup-steps": { type: "int", default: 0, min: 0, units: "steps", group: optim, description: "warmup steps" },
    "weight-decay": { type: "number", default: 0, min: 0, group: optim, description: "AdamW's decoupled weight decay" },
    "adam-beta1": { type: "number", default: 0.9, min: 0, max: 0.999999, group: optim, description: "AdamW's first-moment decay" },
    "adam-beta2": { type: "number", default: 0.999, min: 0, max: 0.999999, group: optim, description: "AdamW's second-moment decay" },
    "adam-epsilon": { type: "number", default: 1e-8, min: 0, group: optim, description: "AdamW's epsilon" },
    "max-grad-norm": { type: "number", default: 1, min: 0, group: optim, aliases: ["grad-clip", "clip"], description: "clip the global gradient norm to this; 0 = no clipping" },
    epochs: { type: "number", default: 1, min: 0, group: optim, aliases: ["num-train-epochs", "num-epochs"], description: "passes over the training data, fractional too (unless --max-steps)" },
    "max-steps": { type: "int", min: 1, defaultText: "epochs x batches", units: "steps", group: optim, aliases: ["iters", "steps", "num-steps"], description: "optimizer steps to run (the schedule spans them)" },
    seed: { type: "int", default: 42, min: 0, group: optim, description: "seed of the adapter init, data order and dropout" },
    optimizer: {
      type: "string", choices: OPTIMIZERS, default: "adamw", group: optim, aliases: ["optim"],
      description: "adamw (state on the GPU), paged_adamw (pages m and v to host memory only when --gpu-memory-budget needs it), adamw_8bit (8-bit blockwise state)",
    },
    "gpu-memory-budget": {
      type: "bytes", defaultText: "none", value: "<bytes|512MiB|2GiB>", group: optim,
      description: "GPU bytes training may hold; the planner refuses with a suggestion when the plan exceeds it",
    },
    "eval-steps": { type: "int", default: 0, min: 0, units: "steps", group: run, description: "evaluate every N steps (and always at the start and end)" },
    "eval-strategy": { type: "string", choices: STRATEGIES, default: "steps", group: run, aliases: ["evaluation-strategy"], description: "evaluate every --eval-steps (steps), at each epoch's end (epoch), or only at the start and end (no)" },
    "save-steps": { type: "int", default: 0, min: 0, units: "steps", group: run, description: "checkpoint every N steps (and always at the end and on Ctrl-C)" },
    "save-strategy": { type: "string", choices: STRATEGIES, default: "steps", group: run, description: "checkpoint every --save-steps (steps), at each epoch's end (epoch), or only at the end (no)" },
    "save-total-limit": { type: "int", min: 1, defaultText: "all", units: "checkpoints", group: run, description: "keep only the newest N checkpoints (and the best with --load-best-model-at-end); older ones are deleted" },
    "load-best-model-at-end": {
      type: "boolean", group: run, aliases: ["load-best"],
      description: "at the end, load the checkpoint with the lowest eval loss and save it as the adapter (eval and save strategies must match)",
    },
    "metric-for-best-model": { type: "string", choices: ["eval_loss", "loss"], default: "eval_loss", group: run, description: "the metric --load-best-model-at-end compares (lower is better)" },
    "early-stopping-patience": { type: "int", min: 1, defaultText: "off", units: "evaluations", group: run, description: "stop after N evaluations in a row without a better eval loss (needs --load-best-model-at-end)" },
    "early-stopping-threshold": { type: "number", default: 0, min: 0, group: run, description: "how much an eval loss must beat the best by to count as better" },
    resume: { type: "boolean", group: run, description: "continue from the latest checkpoint in --out, with the losses of an uninterrupted run" },
    "resume-from": { type: "string", value: "<checkpoint-dir>", group: run, description: "continue from this checkpoint directory" },
    "gradient-checkpointing": { type: "boolean", group: run, description: "recompute each block in the backward (less memory, more time)" },
    sample: { type: "string", value: '"prompt"', group: run, description: "after training, print 64 sampled tokens of this prompt with the adapter" },
  },
  notes: [
    "examples:",
    "  npx deno task train --model ../shared/models/stories260K/stories260K.gguf --data ../shared/data/tinyshakespeare.txt \\",
    "      --out runs/shakespeare --seq-len 128 --lr 2e-3 --max-steps 100 --eval-steps 25",
    "  npx deno task train --config examples/qlora_stories.yaml --max-steps 20",
  ],
} as const satisfies Command;

/**
 * What the quantized base costs, per parameter. 4-bit: its codes and scales (as `quantize` reports),
 * then with shared tables and padding. GGUF block formats: the file's bytes, per type.
 */
export function quantizedBaseLines(model: Model): string[] {
  const p = model.parameterReport();
  const lines: string[] = [];
  const q = p.quantization;
  if (q && p.quantizedParams) {
    let payload = 0;
    for (const w of model.llama.quantized.values()) {
      if (w.kind !== "4bit") continue;
      const b = fourBitPayload(w.shape[0] * w.shape[1], q);
      payload += b.codes + b.scales;
    }
    lines.push(
      `[train] base linears in ${q.type}${q.doubleQuant ? " + double quant" : ""} (blocksize ${q.blocksize}): ${p.quantizedParams} params, ` +
        `${((payload * 8) / p.quantizedParams).toFixed(3)} bits/param in codes and block scales; ${p.quantizedBitsPerParam.toFixed(3)} in GPU buffers ` +
        `with the code maps (shared by all weights) and 16-byte buffer padding`,
    );
  }
  for (const [type, f] of Object.entries(p.ggmlTypes)) {
    lines.push(`[train] base kept in the GGUF's ${type}: ${f.params} params, ${f.bitsPerParam.toFixed(3)} bits/param in GPU buffers (dequantized on the fly)`);
  }
  return lines;
}

const list = (s: string | undefined) => s === undefined ? undefined : s.split(",").map((t) => t.trim()).filter(Boolean);

/** The PEFT config the flags describe (PEFT's keys; each method's own defaults where a flag is absent). */
export function adapterConfig(v: FlagValues<typeof TRAIN>, nLayers: number): Record<string, unknown> {
  const t = v["target-modules"];
  const target_modules = t === "all-linear" || t === "all" ? t : list(t);
  if (v.layers !== undefined && v["last-layers"] !== undefined) throw usageError("give --layers or --last-layers, not both");
  let layers_to_transform: number[] | undefined;
  if (v.layers !== undefined) {
    layers_to_transform = list(v.layers)!.map((x) => {
      if (!/^\d+$/.test(x)) throw usageError(`--layers: ${JSON.stringify(x)} is not a layer index`);
      return Number(x);
    });
  } else if (v["last-layers"] !== undefined) {
    const n = Math.min(v["last-layers"], nLayers);
    layers_to_transform = Array.from({ length: n }, (_, i) => nLayers - n + i);
  }
  const type = v["peft-type"];
  if (["prompt_tuning", "p_tuning", "prefix_tuning", "bottleneck", "mam"].includes(type) && (target_modules || layers_to_transform || v["feedforward-modules"])) {
    throw usageError(`--target-modules, --layers and --last-layers do not apply to --peft-type ${type} (it adapts every layer)`);
  }
  switch (type) {
    case "lora":
    case "dora":
      return {
        peft_type: "LORA", r: v.r, lora_alpha: v["lora-alpha"], lora_dropout: v["lora-dropout"], target_modules: target_modules ?? ["q_proj", "v_proj"],
        use_rslora: v["use-rslora"], use_dora: type === "dora", layers_to_transform,
      };
    case "ia3":
      return { peft_type: "IA3", target_modules, feedforward_modules: list(v["feedforward-modules"]), layers_to_transform };
    case "bitfit":
      return { peft_type: "BITFIT", target_modules, layers_to_transform };
    case "ln_tuning":
      if (layers_to_transform) throw usageError("--layers / --last-layers: ln_tuning picks norms with --target-modules (PEFT's LN tuning has no layers_to_transform)");
      return { peft_type: "LN_TUNING", target_modules };
    case "prompt_tuning": {
      const init = v["prompt-init"].toUpperCase();
      if (init === "TEXT" && !v["prompt-init-text"]) throw usageError("--prompt-init text needs --prompt-init-text");
      return { peft_type: "PROMPT_TUNING", num_virtual_tokens: v["num-virtual-tokens"], prompt_tuning_init: init, prompt_tuning_init_text: v["prompt-init-text"] ?? null };
    }
    case "p_tuning":
      return {
        peft_type: "P_TUNING", num_virtual_tokens: v["num-virtual-tokens"], encoder_reparameterization_type: v["encoder-type"].toUpperCase(),
        encoder_hidden_size: v["encoder-hidden-size"],
      };
    case "prefix_tuning":
      return { peft_type: "PREFIX_TUNING", num_virtual_tokens: v["num-virtual-tokens"], prefix_projection: v["prefix-projection"], encoder_hidden_size: v["encoder-hidden-size"] };
    case "bottleneck":
      return { peft_type: "BOTTLENECK", config: v.bottleneck, reduction_factor: v["reduction-factor"] };
    case "mam":
      return {
        peft_type: "HYBRID",
        components: {
          prefix: { peft_type: "PREFIX_TUNING", num_virtual_tokens: v["num-virtual-tokens"], prefix_projection: v["prefix-projection"], encoder_hidden_size: v["encoder-hidden-size"] },
          adapter: { peft_type: "BOTTLENECK", config: "par_bn", reduction_factor: v["reduction-factor"] },
        },
      };
    case "full":
      if (target_modules || layers_to_transform) throw usageError("--peft-type full trains every block weight and norm: use --peft-type partial with --target-modules / --layers to choose");
      return { peft_type: "PARTIAL", target_modules: "all", layers_to_transform: null };
    default:
      return { peft_type: "PARTIAL", target_modules, layers_to_transform };
  }
}

/** The adapter's name, from --out (it titles loss.svg): "runs/shakespeare" -> "shakespeare". */
export function adapterName(out: string): string {
  const name = basename(out.replace(/[\\/]+$/, "")).replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64);
  return /^[A-Za-z0-9_]/.test(name) ? name : "adapter";
}

/** Every TRAIN flag's value (distill's table extends train's). */
export type RunValues = FlagValues<typeof TRAIN>;

/** The method flags' contradictions; `given` holds the flags the command line or the recipe set. */
export function checkRunFlags(v: RunValues, given: Set<string>): void {
  if (v["init-adapter"]) {
    const clash = METHOD_FLAGS.filter((f) => given.has(f));
    if (clash.length) {
      throw usageError(`--init-adapter takes the method's settings from the adapter's config: leave out ${clash.map((f) => `--${f}`).join(", ")}`);
    }
  }
  if (!["lora", "dora"].includes(v["peft-type"]) && LORA_FLAGS.some((f) => given.has(f))) {
    throw usageError(`--r, --lora-alpha, --lora-dropout and --use-rslora are LoRA settings; --peft-type is ${v["peft-type"]}`);
  }
  if (v["peft-type"] !== "ia3" && v["feedforward-modules"] !== undefined) throw usageError("--feedforward-modules is an ia3 setting");
  if (!(v.epochs > 0)) throw usageError(`--epochs must be > 0, got ${v.epochs}`);
  if (v.resume && v["resume-from"] !== undefined) throw usageError("give --resume or --resume-from, not both");
}

/** --seq-len beyond the models' context is cut to it (LLaMA-Factory's cutoff_len is a maximum). */
export function fitSeqLen(v: RunValues, ...models: Model[]): void {
  const ctx = Math.min(...models.map((m) => m.config.contextLength));
  if (v["seq-len"] <= ctx) return;
  console.log(`[train] --seq-len ${v["seq-len"]} is longer than the model's context of ${ctx} tokens: sequences of ${ctx}`);
  (v as { "seq-len": number })["seq-len"] = ctx;
}

/** Adds the adapter the flags describe (or loads --init-adapter) and prints PEFT's trainable-parameters line. */
export async function addRunAdapter(model: Model, v: RunValues, name: string): Promise<void> {
  if (v["init-adapter"]) await model.loadAdapter(name, v["init-adapter"]);
  else model.addAdapter(name, adapterConfig(v, model.config.nLayers), v.seed);
  model.printTrainableParameters(name);
}

const LORA_FLAGS = ["r", "lora-alpha", "lora-dropout", "use-rslora"];
/** The flags of each method beyond --target-modules and the layer selection (the others do not apply to it). */
const OWN_FLAGS: Record<string, readonly string[]> = {
  lora: LORA_FLAGS, dora: LORA_FLAGS, ia3: ["feedforward-modules"], prompt_tuning: ["num-virtual-tokens", "prompt-init", "prompt-init-text"],
  p_tuning: ["num-virtual-tokens", "encoder-type", "encoder-hidden-size"], prefix_tuning: ["num-virtual-tokens", "prefix-projection", "encoder-hidden-size"],
  bottleneck: ["bottleneck", "reduction-factor"], mam: ["num-virtual-tokens", "prefix-projection", "encoder-hidden-size", "reduction-factor"],
};
const METHOD_FLAGS = ["peft-type", "target-modules", "layers", "last-layers", ...new Set(Object.values(OWN_FLAGS).flat())];

/**
 * Writes `<out>/config.resolved.yaml`: every flag's value that applies (LoRA's default targets
 * spelled out; no settings of other methods, no method settings with --init-adapter), so it
 * reruns alone.
 */
export async function writeRunConfig(cmd: Command, v: RunValues, source: string): Promise<void> {
  const resolved: Record<string, unknown> = { ...v };
  const lora = ["lora", "dora"].includes(v["peft-type"]);
  const own = OWN_FLAGS[v["peft-type"]] ?? [];
  for (const f of METHOD_FLAGS) if (v["init-adapter"] || (!own.includes(f) && !["peft-type", "target-modules", "layers", "last-layers"].includes(f))) delete resolved[f];
  if (lora && !v["init-adapter"] && v["target-modules"] === undefined) resolved["target-modules"] = "q_proj,v_proj";
  await mkdir(v.out, { recursive: true });
  await writeResolvedConfig(join(v.out, "config.resolved.yaml"), cmd, resolved, source);
}

/** train()'s options from the flags. */
export function trainOptionsFrom(v: RunValues, adapter: string, chatTemplate: string | undefined): TrainOptions {
  return {
    adapter, data: v.data, outputDir: v.out, chatTemplate,
    seqLen: v["seq-len"], stride: v.stride, maxExamples: v["max-examples"], evalFraction: v["eval-fraction"],
    maxEvalBatches: v["max-eval-batches"] || undefined, packing: v.packing, groupByLength: v["group-by-length"],
    batchSize: v["batch-size"], gradientAccumulationSteps: v["grad-accum"], learningRate: v.lr,
    lrScheduler: v["lr-scheduler"] as LrSchedulerName, warmupRatio: v["warmup-ratio"], warmupSteps: v["warmup-steps"],
    weightDecay: v["weight-decay"], adamBeta1: v["adam-beta1"], adamBeta2: v["adam-beta2"], adamEpsilon: v["adam-epsilon"],
    maxGradNorm: v["max-grad-norm"], epochs: v.epochs, maxSteps: v["max-steps"], seed: v.seed,
    evalSteps: v["eval-steps"], evalStrategy: v["eval-strategy"] as Strategy, saveSteps: v["save-steps"], saveStrategy: v["save-strategy"] as Strategy,
    saveTotalLimit: v["save-total-limit"], loadBestModelAtEnd: v["load-best-model-at-end"], metricForBestModel: v["metric-for-best-model"] as "eval_loss",
    earlyStoppingPatience: v["early-stopping-patience"], earlyStoppingThreshold: v["early-stopping-threshold"],
    resume: v["resume-from"] ?? v.resume, gradientCheckpointing: v["gradient-checkpointing"], optimizer: v.optimizer as OptimizerName,
    gpuMemoryBudget: v["gpu-memory-budget"],
  };
}

/** "[train] eval loss a -> b (x% lower), perplexity p -> q". */
export function evalLine(tag: string, what: string, before: number, after: number): string {
  const drop = 100 * (1 - after / before);
  return `[${tag}] eval ${what} ${before.toFixed(4)} -> ${after.toFixed(4)} (${drop.toFixed(1)}% lower)` +
    (what === "loss" ? `, perplexity ${Math.exp(before).toFixed(2)} -> ${Math.exp(after).toFixed(2)}` : "");
}

/** --sample: 64 tokens of the prompt with the adapter (the settings generate's test reproduces). */
export async function printSample(model: Model, adapter: string, prompt: string): Promise<void> {
  const text = await model.complete(prompt, { adapter, maxTokens: 64, temperature: 0.8, topP: 0.9, seed: 1 });
  console.log(`[sample] ${prompt}${text}`);
}

export async function main(args: string[]): Promise<void> {
  const f = await parseWithRecipe(TRAIN, args, "train");
  if (!f) return;
  const v = f.values;
  checkRunFlags(v, f.given);
  const template = await resolveChatTemplate(v["chat-template"]);
  const model = await loadModelFromFlags(v);
  try {
    for (const line of quantizedBaseLines(model)) console.log(line);
    fitSeqLen(v, model);
    const name = adapterName(v.out);
    await addRunAdapter(model, v, name);
    await writeRunConfig(TRAIN, v, f.source);
    const res = await train(model, trainOptionsFrom(v, name, template));
    if (res.initialEvalLoss !== undefined && res.finalEvalLoss !== undefined) console.log(evalLine("train", "loss", res.initialEvalLoss, res.finalEvalLoss));
    if (!res.stoppedEarly) {
      console.log(`[train] adapter saved to ${v.out}/adapter (use: generate --adapter ${v.out}/adapter, or merge it: merge --adapter ${v.out}/adapter); loss curve: ${v.out}/loss.svg`);
    }
    if (v.sample !== undefined && !res.stoppedEarly) await printSample(model, name, v.sample);
  } finally {
    model.close();
  }
}
