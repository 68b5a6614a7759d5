/**
 * `train --model <gguf|hf dir> --data <txt|jsonl> --out <dir> [flags]` — LoRA fine-tuning with a
 * progress bar; writes metrics.jsonl, loss.svg, checkpoints and the final adapter (HF PEFT format)
 * into --out. Flags mirror train()'s options and PEFT's LoraConfig.
 */
import { parseArgs } from "node:util";
import { PeftError } from "../errors.ts";
import { loadModel } from "../api/model.ts";
import { train } from "../train/trainer.ts";
import type { LrSchedulerName } from "../train/schedule.ts";
import { type OptimizerName, OPTIMIZERS } from "../train/paged_adamw.ts";
import { computeDtypeFlag, numberFlag } from "./generate.ts";

export const TRAIN_HELP = `usage: train --model <path.gguf|hf-dir> --data <file.txt|file.jsonl> --out <dir> [flags]
  LoRA:   --r 8 --lora-alpha 16 --lora-dropout 0.05 --target-modules q_proj,v_proj|all-linear [--use-rslora]
          [--init-adapter <peft-dir>] (continue from an existing adapter)
  data:   --seq-len 256 --stride N --max-examples N --eval-fraction 0.05 [--packing]
  optim:  --batch-size 8 --grad-accum 1 --lr 2e-4 --lr-scheduler linear|cosine|constant|constant_with_warmup
          --warmup-ratio 0 --warmup-steps 0 --weight-decay 0 --max-grad-norm 1.0 --epochs 1 --max-steps N --seed 42
  run:    --eval-steps N --save-steps N --resume [--gradient-checkpointing] [--sample "prompt"]
  QLoRA:  --quantize nf4|fp4 [--double-quant] [--blocksize 64] (4-bit frozen base, dequantized on the fly)
          --optimizer adamw|paged_adamw|adamw_8bit --gpu-memory-budget <bytes|512MiB|2GiB> (plans memory first, refuses when over)
  f16:    --compute-dtype f32|f16|auto (f16: base matmuls on f16 operands, f16 base weights unless 4-bit,
          LoRA kept f32, dynamic loss scaling; needs shader-f16, else f32)`;

/** "123", "512MiB", "2GiB", "1.5GB" -> bytes. */
export function parseBytes(s: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$/i.exec(s);
  if (!m) throw new PeftError("BAD_FLAG", `--${flag}: ${JSON.stringify(s)} is not a size (e.g. 536870912, 512MiB, 2GiB)`);
  const unit = (m[2] ?? "B").toLowerCase();
  const mult: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 2 ** 20, gb: 1e9, gib: 2 ** 30 };
  return Math.floor(Number(m[1]) * mult[unit]);
}

export async function main(args: string[]): Promise<void> {
  const { values: v } = parseArgs({
    args,
    options: {
      model: { type: "string" }, data: { type: "string" }, out: { type: "string" },
      r: { type: "string" }, "lora-alpha": { type: "string" }, "lora-dropout": { type: "string" },
      "target-modules": { type: "string" }, "use-rslora": { type: "boolean" }, "init-adapter": { type: "string" },
      "seq-len": { type: "string" }, stride: { type: "string" }, "max-examples": { type: "string" },
      "eval-fraction": { type: "string" }, packing: { type: "boolean" },
      "batch-size": { type: "string" }, "grad-accum": { type: "string" }, lr: { type: "string" },
      "lr-scheduler": { type: "string" }, "warmup-ratio": { type: "string" }, "warmup-steps": { type: "string" },
      "weight-decay": { type: "string" }, "max-grad-norm": { type: "string" }, epochs: { type: "string" },
      "max-steps": { type: "string" }, seed: { type: "string" }, "eval-steps": { type: "string" },
      "save-steps": { type: "string" }, resume: { type: "boolean" }, "gradient-checkpointing": { type: "boolean" },
      sample: { type: "string" }, help: { type: "boolean", short: "h" },
      quantize: { type: "string" }, "double-quant": { type: "boolean" }, blocksize: { type: "string" },
      optimizer: { type: "string" }, "gpu-memory-budget": { type: "string" }, "compute-dtype": { type: "string" },
    },
    strict: true,
  });
  if (v.help) return void console.log(TRAIN_HELP);
  for (const k of ["model", "data", "out"] as const) {
    if (!v[k]) throw new PeftError("BAD_FLAG", `--${k} is required\n${TRAIN_HELP}`);
  }
  const opt = (name: string) => (v as Record<string, string | undefined>)[name];
  const num = (name: string) => opt(name) === undefined ? undefined : numberFlag(opt(name), name, 0);
  const quantize = opt("quantize");
  if (quantize !== undefined && quantize !== "nf4" && quantize !== "fp4") throw new PeftError("BAD_FLAG", `--quantize must be nf4 or fp4, got ${quantize}`);
  if (quantize === undefined && (v["double-quant"] || opt("blocksize") !== undefined)) throw new PeftError("BAD_FLAG", "--double-quant and --blocksize need --quantize nf4|fp4");
  const optimizer = opt("optimizer");
  if (optimizer !== undefined && !(OPTIMIZERS as string[]).includes(optimizer)) throw new PeftError("BAD_FLAG", `--optimizer must be one of ${OPTIMIZERS.join(", ")}, got ${optimizer}`);
  const budget = opt("gpu-memory-budget");
  const model = await loadModel(v.model!, {
    computeDtype: computeDtypeFlag(opt("compute-dtype")),
    ...(quantize ? { quantize, doubleQuant: v["double-quant"] ?? false, blocksize: num("blocksize") } : {}),
  });
  if (quantize) {
    const p = model.parameterReport();
    console.log(`[train] base linears quantized to ${quantize}${v["double-quant"] ? " + double quant" : ""}: ${p.quantizedParams} params in ${p.quantizedBytes} GPU bytes (${p.quantizedBitsPerParam.toFixed(3)} bits/param)`);
  }
  const name = "adapter";
  const targets = opt("target-modules");
  if (v["init-adapter"]) await model.loadAdapter(name, v["init-adapter"]);
  else {
    model.addAdapter(name, {
      r: num("r") ?? 8,
      lora_alpha: num("lora-alpha") ?? 16,
      lora_dropout: num("lora-dropout") ?? 0.05,
      target_modules: targets === undefined ? ["q_proj", "v_proj"] : targets === "all-linear" ? "all-linear" : targets.split(","),
      use_rslora: v["use-rslora"] ?? false,
    }, num("seed") ?? 42);
  }
  model.printTrainableParameters(name);
  const res = await train(model, {
    adapter: name, data: v.data!, outputDir: v.out!,
    seqLen: num("seq-len"), stride: num("stride"), maxExamples: num("max-examples"), evalFraction: num("eval-fraction") ?? 0.05,
    packing: v.packing, batchSize: num("batch-size"), gradientAccumulationSteps: num("grad-accum"), learningRate: num("lr"),
    lrScheduler: opt("lr-scheduler") as LrSchedulerName | undefined, warmupRatio: num("warmup-ratio"), warmupSteps: num("warmup-steps"),
    weightDecay: num("weight-decay"), maxGradNorm: num("max-grad-norm"), epochs: num("epochs"), maxSteps: num("max-steps"),
    seed: num("seed"), evalSteps: num("eval-steps"), saveSteps: num("save-steps"), resume: v.resume,
    gradientCheckpointing: v["gradient-checkpointing"],
    optimizer: optimizer as OptimizerName | undefined,
    gpuMemoryBudget: budget === undefined ? undefined : parseBytes(budget, "gpu-memory-budget"),
  });
  if (res.initialEvalLoss !== undefined && res.finalEvalLoss !== undefined) {
    const drop = 100 * (1 - res.finalEvalLoss / res.initialEvalLoss);
    console.log(`[train] eval loss ${res.initialEvalLoss.toFixed(4)} -> ${res.finalEvalLoss.toFixed(4)} (${drop.toFixed(1)}% lower)`);
  }
  if (!res.stoppedEarly) console.log(`[train] adapter saved to ${v.out}/adapter (use: generate --adapter ${v.out}/adapter); loss curve: ${v.out}/loss.svg`);
  if (v.sample !== undefined && !res.stoppedEarly) {
    const text = await model.complete(v.sample, { adapter: name, maxTokens: 64, temperature: 0.8, topP: 0.9, seed: 1 });
    console.log(`[sample] ${v.sample}${text}`);
  }
  model.close();
}
