/**
 * `merge --model <gguf> --adapter <peft-dir> --out merged.gguf [--dtype f32|f16]`: merges a LoRA
 * adapter into the base weights (W' = W + scale·B·A, PEFT's merge_and_unload) and saves the result
 * as a GGUF that llama.cpp and `generate` load with no adapter (llama-export-lora, mlx_lm.fuse).
 * With --quantize the adapter is merged into the dequantized 4-bit base it was trained on (QLoRA),
 * and the file holds those values.
 */
import { stat } from "node:fs/promises";
import { type Command, parseFlags } from "./flags.ts";
import { describeModel, loadModelFromFlags, MODEL_FLAGS } from "./model_flags.ts";

export const MERGE = {
  name: "merge",
  summary: "merge a LoRA adapter into its base model and save a GGUF that needs no adapter",
  usage: "--model <path.gguf> --adapter <peft-dir> --out <merged.gguf> [flags]",
  flags: {
    ...MODEL_FLAGS,
    adapter: { type: "string", required: true, value: "<peft-dir>", group: "model", aliases: ["adapter-path", "lora"], description: "HF PEFT adapter directory to merge (e.g. runs/shakespeare/adapter)" },
    out: { type: "string", required: true, value: "<merged.gguf>", group: "output", aliases: ["output", "save-path"], description: "GGUF file to write (atomically)" },
    dtype: {
      type: "string", choices: ["f32", "f16"], default: "f32", group: "output",
      description: "storage type of the 2-D weights in the file (norms stay f32, as llama.cpp's converter writes them)",
    },
  },
  notes: [
    "The base must be a GGUF file (its metadata and tokenizer go into the output).",
    "example:",
    "  npx deno task merge --model ../shared/models/stories260K/stories260K.gguf --adapter runs/shakespeare/adapter --out runs/shakespeare/merged.gguf",
  ],
} as const satisfies Command;

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(MERGE, args);
  if (!f) return;
  const v = f.values;
  const model = await loadModelFromFlags(v);
  try {
    console.log(`[merge] ${v.model} ${describeModel(model)}`);
    const adapter = await model.loadAdapter("merge", v.adapter);
    const { r, lora_alpha: alpha } = adapter.config;
    await model.mergeAndUnload("merge");
    await model.save(v.out, { dtype: v.dtype as "f32" | "f16" });
    const bytes = (await stat(v.out)).size;
    console.log(`[merge] ${v.adapter} (r ${r}, alpha ${alpha}) merged; wrote ${v.out} (${v.dtype}, ${(bytes / 2 ** 20).toFixed(2)} MiB)`);
  } finally {
    model.close();
  }
}
