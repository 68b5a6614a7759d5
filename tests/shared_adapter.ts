/**
 * One CI-sized LoRA fine-tune of stories260K on tinyshakespeare per test process, shared by every
 * test that needs a trained adapter (training on the software GPU costs tens of seconds).
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type Model } from "../src/api/model.ts";
import { train, type TrainResult } from "../src/train/trainer.ts";
import { SHARED, STORIES, testGpu } from "./helpers.ts";

export const SHAKESPEARE = `${SHARED}data/tinyshakespeare.txt`;

export const TEST_LORA = { r: 8, lora_alpha: 16, lora_dropout: 0.05, target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"] };
export const TEST_TRAIN = {
  data: SHAKESPEARE, seqLen: 64, batchSize: 8, learningRate: 3e-3, lrScheduler: "cosine" as const, warmupRatio: 0.05,
  maxSteps: 60, evalFraction: 0.02, maxEvalBatches: 8, seed: 1, progress: false,
};

export interface TrainedAdapter {
  model: Model;
  result: TrainResult;
  /** HF PEFT directory of the trained adapter. */
  dir: string;
  outputDir: string;
}

let shared: Promise<TrainedAdapter> | null = null;

export function trainedAdapter(): Promise<TrainedAdapter> {
  return shared ??= (async () => {
    const model = await loadModel(STORIES, { gpu: await testGpu() });
    model.addAdapter("shakespeare", TEST_LORA, 1);
    const outputDir = await mkdtemp(join(tmpdir(), "peft-train-"));
    const result = await train(model, { adapter: "shakespeare", outputDir, ...TEST_TRAIN });
    return { model, result, dir: join(outputDir, "adapter"), outputDir };
  })();
}
