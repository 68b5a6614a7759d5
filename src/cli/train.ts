/**
 * `train --model <gguf|hf dir> --data <txt|jsonl> --out <dir> [flags]`: LoRA fine-tuning with a
 * progress bar; writes metrics.jsonl, loss.svg, checkpoints and the final adapter (HF PEFT format)
 * into --out. Flags mirror train()'s options and PEFT's LoraConfig; the defaults below are what
 * the CLI passes (the API's own defaults are transformers').
 */
import { basename } from "node:path";
import { fourBitPayload } from "../quant/mod.ts";
import { train } from "../train/trainer.ts";
import { LR_SCHEDULERS, type LrSchedulerName } from "../train/schedule.ts";
import { type OptimizerName, OPTIMIZERS } from "../train/paged_adamw.ts";
import type { Model } from "../model/model.ts";
import { chatTemplateFlag, resolveChatTemplate } from "./chat_template_flag.ts";
import { type Command, parseFlags, usageError } from "./flags.ts";
import { loadModelFromFlags, MODEL_FLAGS } from "./model_flags.ts";

/** Evaluations on the CLI use at most this many batches unless --max-eval-batches says otherwise. */
export const CLI_EVAL_BATCHES = 8;

const lora = "LoRA", data = "data", optim = "optimization", run = "run";

export const TRAIN = {
  name: "train",
  summary: "fine-tune a LoRA adapter; writes metrics.jsonl, loss.svg, checkpoint-N/ and adapter/ into --out",
  usage: "--model <path.gguf|hf-dir> --data <file.txt|file.jsonl> --out <dir> [flags]",
  flags: {
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
    "chat-template": chatTemplateFlag(data, 'for {"messages"} records'),
    r: { type: "int", default: 8, min: 1, group: lora, aliases: ["rank", "lora-r", "lora-rank"], description: "LoRA rank: inner size of the low-rank update B·A" },
    "lora-alpha": { type: "number", default: 16, min: 0, group: lora, aliases: ["alpha"], description: "LoRA scale numerator: updates are scaled by alpha/r (alpha/sqrt(r) with --use-rslora)" },
    "lora-dropout": { type: "number", default: 0.05, min: 0, max: 0.99, group: lora, aliases: ["dropout"], description: "dropout on the LoRA input during training" },
    "target-modules": {
      type: "string", default: "q_proj,v_proj", value: "<m1,m2,...|all-linear>", group: lora, aliases: ["lora-layers", "targets"],
      description: "linear modules to adapt: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj, or all-linear",
    },
    "use-rslora": { type: "boolean", group: lora, description: "rank-stabilized scale alpha/sqrt(r)" },
    "init-adapter": { type: "string", value: "<peft-dir>", group: lora, description: "continue training an existing adapter (its config replaces --r, --lora-alpha, ...)" },
    "batch-size": { type: "int", default: 8, min: 1, units: "sequences", group: optim, aliases: ["batch", "per-device-train-batch-size"], description: "sequences per micro-batch" },
    "grad-accum": { type: "int", default: 1, min: 1, units: "micro-batches", group: optim, aliases: ["gradient-accumulation-steps", "grad-accumulation"], description: "micro-batches summed per optimizer step" },
    lr: { type: "number", default: 2e-4, min: 0, group: optim, aliases: ["learning-rate"], description: "peak learning rate" },
    "lr-scheduler": { type: "string", choices: LR_SCHEDULERS, default: "linear", group: optim, aliases: ["lr-scheduler-type", "lr-schedule"], description: "learning-rate schedule after warmup" },
    "warmup-ratio": { type: "number", default: 0, min: 0, max: 1, group: optim, description: "share of the steps spent warming up (overridden by --warmup-steps)" },
    "warmup-steps": { type: "int", default: 0, min: 0, units: "steps", group: optim, description: "warmup steps" },
    "weight-decay": { type: "number", default: 0, min: 0, group: optim, description: "AdamW's decoupled weight decay" },
    "max-grad-norm": { type: "number", default: 1, min: 0, group: optim, aliases: ["grad-clip", "clip"], description: "clip the global gradient norm to this; 0 = no clipping" },
    epochs: { type: "int", default: 1, min: 1, group: optim, aliases: ["num-train-epochs", "num-epochs"], description: "passes over the training data (unless --max-steps)" },
    "max-steps": { type: "int", min: 1, defaultText: "epochs x batches", units: "steps", group: optim, aliases: ["iters", "steps", "num-steps"], description: "optimizer steps to run (the schedule spans them)" },
    seed: { type: "int", default: 42, min: 0, group: optim, description: "seed of the LoRA init, data order and dropout" },
    optimizer: {
      type: "string", choices: OPTIMIZERS, default: "adamw", group: optim, aliases: ["optim"],
      description: "adamw (state on the GPU), paged_adamw (pages m and v to host memory only when --gpu-memory-budget needs it), adamw_8bit (8-bit blockwise state)",
    },
    "gpu-memory-budget": {
      type: "bytes", defaultText: "none", value: "<bytes|512MiB|2GiB>", group: optim,
      description: "GPU bytes training may hold; the planner refuses with a suggestion when the plan exceeds it",
    },
    "eval-steps": { type: "int", default: 0, min: 0, units: "steps", group: run, description: "evaluate every N steps (and always at the start and end)" },
    "save-steps": { type: "int", default: 0, min: 0, units: "steps", group: run, description: "checkpoint every N steps (and always at the end and on Ctrl-C)" },
    resume: { type: "boolean", group: run, description: "continue from the latest checkpoint in --out, with the losses of an uninterrupted run" },
    "gradient-checkpointing": { type: "boolean", group: run, description: "recompute each block in the backward (less memory, more time)" },
    sample: { type: "string", value: '"prompt"', group: run, description: "after training, print 64 sampled tokens of this prompt with the adapter" },
  },
  notes: [
    "example:",
    "  npx deno task train --model ../shared/models/stories260K/stories260K.gguf --data ../shared/data/tinyshakespeare.txt \\",
    "      --out runs/shakespeare --seq-len 128 --lr 2e-3 --max-steps 100 --eval-steps 25",
  ],
} as const satisfies Command;

/** What the 4-bit base costs, per parameter: its codes and scales (as `quantize` reports), then with shared tables and padding. */
export function quantizedBaseLine(model: Model): string {
  const p = model.parameterReport();
  const q = p.quantization!;
  let payload = 0;
  for (const w of model.llama.quantized.values()) {
    const b = fourBitPayload(w.shape[0] * w.shape[1], q);
    payload += b.codes + b.scales;
  }
  return `[train] base linears in ${q.type}${q.doubleQuant ? " + double quant" : ""} (blocksize ${q.blocksize}): ${p.quantizedParams} params, ` +
    `${((payload * 8) / p.quantizedParams).toFixed(3)} bits/param in codes and block scales; ${p.quantizedBitsPerParam.toFixed(3)} in GPU buffers ` +
    `with the code maps (shared by all weights) and 16-byte buffer padding`;
}

/** The adapter's name, from --out (it titles loss.svg): "runs/shakespeare" -> "shakespeare". */
function adapterName(out: string): string {
  const name = basename(out.replace(/[\\/]+$/, "")).replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64);
  return /^[A-Za-z0-9_]/.test(name) ? name : "adapter";
}

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(TRAIN, args);
  if (!f) return;
  const v = f.values;
  const template = await resolveChatTemplate(v["chat-template"]);
  if (v["init-adapter"] && args.some((a) => /^--(r|lora-alpha|lora-dropout|target-modules|use-rslora)(=|$)/.test(a))) {
    throw usageError("--init-adapter takes the LoRA settings from the adapter's config: leave out --r, --lora-alpha, --lora-dropout, --target-modules and --use-rslora");
  }
  const model = await loadModelFromFlags(v);
  try {
    if (model.isQuantized) console.log(quantizedBaseLine(model));
    const name = adapterName(v.out);
    if (v["init-adapter"]) await model.loadAdapter(name, v["init-adapter"]);
    else {
      const targets = v["target-modules"];
      model.addAdapter(name, {
        r: v.r, lora_alpha: v["lora-alpha"], lora_dropout: v["lora-dropout"],
        target_modules: targets === "all-linear" ? "all-linear" : targets.split(",").map((t) => t.trim()).filter(Boolean),
        use_rslora: v["use-rslora"],
      }, v.seed);
    }
    model.printTrainableParameters(name);
    const res = await train(model, {
      adapter: name, data: v.data, outputDir: v.out, chatTemplate: template,
      seqLen: v["seq-len"], stride: v.stride, maxExamples: v["max-examples"], evalFraction: v["eval-fraction"],
      maxEvalBatches: v["max-eval-batches"] || undefined, packing: v.packing,
      batchSize: v["batch-size"], gradientAccumulationSteps: v["grad-accum"], learningRate: v.lr,
      lrScheduler: v["lr-scheduler"] as LrSchedulerName, warmupRatio: v["warmup-ratio"], warmupSteps: v["warmup-steps"],
      weightDecay: v["weight-decay"], maxGradNorm: v["max-grad-norm"], epochs: v.epochs, maxSteps: v["max-steps"],
      seed: v.seed, evalSteps: v["eval-steps"], saveSteps: v["save-steps"], resume: v.resume,
      gradientCheckpointing: v["gradient-checkpointing"], optimizer: v.optimizer as OptimizerName, gpuMemoryBudget: v["gpu-memory-budget"],
    });
    if (res.initialEvalLoss !== undefined && res.finalEvalLoss !== undefined) {
      const drop = 100 * (1 - res.finalEvalLoss / res.initialEvalLoss);
      console.log(
        `[train] eval loss ${res.initialEvalLoss.toFixed(4)} -> ${res.finalEvalLoss.toFixed(4)} (${drop.toFixed(1)}% lower), ` +
          `perplexity ${Math.exp(res.initialEvalLoss).toFixed(2)} -> ${Math.exp(res.finalEvalLoss).toFixed(2)}`,
      );
    }
    if (!res.stoppedEarly) {
      console.log(`[train] adapter saved to ${v.out}/adapter (use: generate --adapter ${v.out}/adapter, or merge it: merge --adapter ${v.out}/adapter); loss curve: ${v.out}/loss.svg`);
    }
    if (v.sample !== undefined && !res.stoppedEarly) {
      const text = await model.complete(v.sample, { adapter: name, maxTokens: 64, temperature: 0.8, topP: 0.9, seed: 1 });
      console.log(`[sample] ${v.sample}${text}`);
    }
  } finally {
    model.close();
  }
}
