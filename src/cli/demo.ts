/**
 * The quick start's main job on defaults: load the bundled stories260K model from ../shared and
 * generate a story. (With training available it fine-tunes first, then generates with the adapter.)
 */
import process from "node:process";
import { fileURLToPath } from "node:url";
import { loadModel } from "../model/model.ts";

const DEFAULT_MODEL = fileURLToPath(new URL("../../../shared/models/stories260K/stories260K.gguf", import.meta.url));

export async function main(args: string[]): Promise<void> {
  const path = args[0] ?? DEFAULT_MODEL;
  const model = await loadModel(path);
  console.error(`[demo] ${path} on ${model.gpu.info.description} (${model.gpu.info.runtime})`);
  const prompt = "Once upon a time";
  process.stdout.write(prompt);
  for await (const t of model.generate(prompt, { maxTokens: 96, temperature: 0.8, topP: 0.9, seed: 1 })) process.stdout.write(t);
  process.stdout.write("\n");
  model.close();
}
