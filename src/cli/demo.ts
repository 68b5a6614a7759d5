/**
 * The quick start's main job on defaults: load the bundled stories260K model from ../shared,
 * sample a play-style prompt with it, fine-tune a LoRA adapter on tinyshakespeare for a few dozen
 * steps on the GPU, then sample the same prompt with the adapter and show the held-out loss and
 * perplexity before and after side by side.
 */
import { basename } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { loadModel } from "../api/model.ts";
import { train } from "../train/trainer.ts";
import { type Command, parseFlags } from "./flags.ts";

const EVAL_FRACTION = 0.02;
const shared = (p: string) => fileURLToPath(new URL(`../../../shared/${p}`, import.meta.url));

export const DEMO = {
  name: "demo",
  summary: "the quick start: sample the bundled model, fine-tune a LoRA adapter on Shakespeare, sample again, compare eval loss",
  usage: "[flags]",
  flags: {
    model: { type: "string", default: shared("models/stories260K/stories260K.gguf"), value: "<path.gguf>", description: "base model" },
    data: { type: "string", default: shared("data/tinyshakespeare.txt"), value: "<file.txt>", description: "training text" },
    out: { type: "string", default: "runs/demo", value: "<dir>", description: "where metrics.jsonl, loss.svg, checkpoints and the adapter go" },
    "max-steps": { type: "int", default: 60, min: 1, units: "steps", description: "optimizer steps to train" },
    prompt: { type: "string", default: "ROMEO:\n", value: '"text"', description: "prompt sampled before and after (a speaker tag shows the play's format)" },
  },
} as const satisfies Command;

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(DEMO, args);
  if (!f) return;
  const { model: modelPath, data, out: outputDir, prompt } = f.values;
  const model = await loadModel(modelPath);
  try {
    console.log(`[demo] ${modelPath} on ${model.gpu.info.description} (${model.gpu.info.runtime})`);
    const sample = { maxTokens: 60, temperature: 0.8, topP: 0.9, seed: 1 };
    console.log(`\n[base model]\n${prompt}${await model.complete(prompt, sample)}\n`);

    model.addAdapter("shakespeare", { r: 8, lora_alpha: 16, lora_dropout: 0.05, target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"] }, 1);
    model.printTrainableParameters("shakespeare");
    const res = await train(model, {
      adapter: "shakespeare", data, seqLen: 64, batchSize: 8, learningRate: 3e-3, lrScheduler: "cosine", warmupRatio: 0.05,
      maxSteps: f.values["max-steps"], evalFraction: EVAL_FRACTION, maxEvalBatches: 8, seed: 1, outputDir,
    });
    process.stdout.write(`\n[with the shakespeare adapter]\n${prompt}`);
    for await (const t of model.generate(prompt, { ...sample, adapter: "shakespeare" })) process.stdout.write(t);
    process.stdout.write("\n\n");
    const before = res.initialEvalLoss ?? NaN, after = res.finalEvalLoss ?? NaN;
    const row = (label: string, a: string, b: string) => `  ${label.padEnd(22)}${a.padStart(10)}${b.padStart(10)}`;
    console.log(
      [
        `[demo] held-out ${EVAL_FRACTION * 100}% of ${basename(data)}:`,
        row("", "before", "after"),
        row("eval loss", before.toFixed(3), after.toFixed(3)),
        row("perplexity", Math.exp(before).toFixed(1), Math.exp(after).toFixed(1)),
        `[demo] adapter in ${outputDir}/adapter, loss curve ${outputDir}/loss.svg`,
      ].join("\n"),
    );
  } finally {
    model.close();
  }
}
