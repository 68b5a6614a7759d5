/**
 * The quick start's main job on defaults: load the bundled stories260K model from ../shared,
 * generate with it, fine-tune a LoRA adapter on tinyshakespeare for a few dozen steps on the GPU,
 * and generate again with the new adapter.
 */
import process from "node:process";
import { fileURLToPath } from "node:url";
import { loadModel } from "../api/model.ts";
import { train } from "../train/trainer.ts";

const shared = (p: string) => fileURLToPath(new URL(`../../../shared/${p}`, import.meta.url));

export async function main(args: string[]): Promise<void> {
  const modelPath = args[0] ?? shared("models/stories260K/stories260K.gguf");
  const dataPath = args[1] ?? shared("data/tinyshakespeare.txt");
  const outputDir = "runs/demo";
  const model = await loadModel(modelPath);
  console.log(`[demo] ${modelPath} on ${model.gpu.info.description} (${model.gpu.info.runtime})`);
  const prompt = "Once upon a time";
  const sample = { maxTokens: 60, temperature: 0.8, topP: 0.9, seed: 1 };
  console.log(`\n[base model]\n${prompt}${await model.complete(prompt, sample)}\n`);

  model.addAdapter("shakespeare", { r: 8, lora_alpha: 16, lora_dropout: 0.05, target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"] }, 1);
  model.printTrainableParameters("shakespeare");
  const res = await train(model, {
    adapter: "shakespeare", data: dataPath, seqLen: 64, batchSize: 8, learningRate: 3e-3, lrScheduler: "cosine", warmupRatio: 0.05,
    maxSteps: 60, evalFraction: 0.02, maxEvalBatches: 8, seed: 1, outputDir,
  });
  console.log(`[demo] eval loss ${res.initialEvalLoss?.toFixed(3)} -> ${res.finalEvalLoss?.toFixed(3)}; adapter in ${outputDir}/adapter, loss curve ${outputDir}/loss.svg`);
  process.stdout.write(`\n[with the shakespeare adapter]\n${prompt}`);
  for await (const t of model.generate(prompt, { ...sample, adapter: "shakespeare" })) process.stdout.write(t);
  process.stdout.write("\n");
  model.close();
}
