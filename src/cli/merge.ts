/**
 * `merge --model <gguf> --adapter <peft-dir> --out merged.gguf [--type f32|f16|q8_0|q4_k]`: merges
 * an adapter into the base weights (W' = W + scale·B·A for LoRA, PEFT's merge_and_unload) and saves
 * the result as a GGUF that llama.cpp and `generate` load with no adapter (llama-export-lora,
 * mlx_lm.fuse). With --quantize the adapter is merged into the dequantized 4-bit base it was
 * trained on (QLoRA), and the file holds those values. `export --merge --to` does the same.
 */
import { mergeAdapter, TYPE_FLAG, writeModelGguf } from "./export.ts";
import { type Command, parseFlags } from "./flags.ts";
import { describeModel, loadModelFromFlags, MODEL_FLAGS } from "./model_flags.ts";
import type { GgufExportType } from "../io/gguf_export_types.ts";

export const MERGE = {
  name: "merge",
  summary: "merge an adapter into its base model and save a GGUF that needs no adapter",
  usage: "--model <path.gguf> --adapter <peft-dir> --out <merged.gguf> [flags]",
  flags: {
    ...MODEL_FLAGS,
    adapter: { type: "string", required: true, value: "<peft-dir>", group: "model", aliases: ["adapter-path", "lora"], description: "HF PEFT adapter directory to merge (e.g. runs/shakespeare/adapter)" },
    out: { type: "string", required: true, value: "<merged.gguf>", group: "output", aliases: ["output", "save-path", "to"], description: "GGUF file to write (atomically)" },
    ...TYPE_FLAG,
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
    console.log(`[merge] merged ${await mergeAdapter(model, v.adapter)}`);
    await writeModelGguf(model, v.out, (v.type ?? "f32") as GgufExportType, "merge");
  } finally {
    model.close();
  }
}
