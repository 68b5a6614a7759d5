/**
 * `export`: files other tools load.
 *   export --model m.gguf --adapter <peft-dir> --to lora.gguf              llama.cpp runtime LoRA (llama-cli -m m.gguf --lora lora.gguf)
 *   export --model m.gguf --adapter <peft-dir> --merge --to x.gguf --type q8_0   the merged model as GGUF
 *   export --model m.gguf --to x-q4_k.gguf --type q4_k                     the base model as GGUF of another type
 *   export --model m.gguf [--adapter <peft-dir> --merge] --to-hf <dir>     (merged) model as a Hugging Face directory
 * `merge` (merge.ts) is `export --merge --to` under its older name.
 */
import { stat } from "node:fs/promises";
import type { Model } from "../api/model.ts";
import { GGUF_EXPORT_TYPES, type GgufExportType } from "../io/gguf_export_types.ts";
import { type Command, type Flag, parseFlags, usageError } from "./flags.ts";
import { describeModel, loadModelFromFlags, MODEL_FLAGS } from "./model_flags.ts";

/** --type, shared with merge. */
export const TYPE_FLAG = {
  type: {
    type: "string", choices: GGUF_EXPORT_TYPES, defaultText: "f32", group: "output", aliases: ["dtype", "outtype", "ftype"],
    description: "storage type of the model's matrices: f32, f16, q8_0 or q4_k (ggml blocks; norms stay f32; rows that are not whole " +
      "blocks fall back as llama.cpp does: q8_0 -> f16, q4_k -> q5_0 -> f16)",
  },
} as const satisfies Record<string, Flag>;

export const EXPORT = {
  name: "export",
  summary: "write a LoRA adapter as a llama.cpp GGUF LoRA, or the (merged) model as GGUF (f32/f16/q8_0/q4_k) or a Hugging Face directory",
  usage: "--model <path.gguf|hf-dir> [--adapter <peft-dir> [--merge]] (--to <out.gguf> [--type t] | --to-hf <dir>)",
  flags: {
    ...MODEL_FLAGS,
    adapter: { type: "string", value: "<peft-dir>", group: "model", aliases: ["lora", "adapter-path"], description: "HF PEFT adapter directory to export (or merge, with --merge)" },
    merge: { type: "boolean", group: "output", aliases: ["fuse", "merged"], description: "merge the adapter into the base weights (W' = W + scale·B·A) and export the model" },
    to: {
      type: "string", value: "<out.gguf>", group: "output", aliases: ["out", "output", "outfile"],
      description: "GGUF to write: the adapter as a llama.cpp LoRA GGUF, or with --merge (or no --adapter) the model",
    },
    "to-hf": { type: "string", value: "<dir>", group: "output", aliases: ["hf", "hf-dir"], description: "Hugging Face directory to write the (merged) model to: config.json, model.safetensors (f32), tokenizer files of an HF source" },
    ...TYPE_FLAG,
  },
  notes: [
    "A LoRA GGUF is f32 and keeps the adapter unmerged: llama.cpp adds (alpha/r)·B·A·x at run time (rsLoRA is written with alpha·√r).",
    "Only plain LoRA has a llama.cpp runtime format; DoRA, (IA)³, LN tuning and partial fine-tuning export with --merge.",
    "GGUF outputs need a GGUF base (its metadata and tokenizer are kept); a GGUF base's tokenizer is not converted for --to-hf.",
    "examples:",
    "  npx deno task export --model ../shared/models/stories260K/stories260K.gguf --adapter runs/shakespeare/adapter --to runs/shakespeare/lora.gguf",
    "  npx deno task export --model ../shared/models/stories260K/stories260K.gguf --adapter runs/shakespeare/adapter --merge --to runs/shakespeare/merged-q8_0.gguf --type q8_0",
  ],
} as const satisfies Command;

const MiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MiB`;

/** Loads and merges the adapter for good (PEFT's merge_and_unload); returns a description for the log. */
export async function mergeAdapter(model: Model, dir: string): Promise<string> {
  const adapter = await model.loadAdapter("export", dir);
  const what = `${dir} (${adapter.method.describe(adapter.config)})`;
  await model.mergeAndUnload("export");
  return what;
}

/** Writes the model's current weights as GGUF of `type`, printing what fell back to another type. */
export async function writeModelGguf(model: Model, path: string, type: GgufExportType, tag: string): Promise<void> {
  const report = await model.save(path, { dtype: type });
  const byNote = new Map<string, string[]>(); // one line per reason (Map.groupBy is not in Node 20)
  for (const f of report.fallbacks) byNote.set(f.note, [...(byNote.get(f.note) ?? []), f.tensor]);
  for (const [note, names] of byNote) {
    console.warn(`[${tag}] ${names.length} tensor(s) (${names.slice(0, 3).join(", ")}${names.length > 3 ? ", …" : ""}): ${note} (llama.cpp's fallback)`);
  }
  const types = Object.entries(report.types).map(([t, n]) => `${n} ${t}`).join(", ");
  console.log(`[${tag}] wrote ${path} (${type}: ${types}; ${MiB((await stat(path)).size)})`);
}

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(EXPORT, args);
  if (!f) return;
  const v = f.values;
  if ((v.to === undefined) === (v["to-hf"] === undefined)) throw usageError("give one output: --to <out.gguf> or --to-hf <dir> (see export --help)");
  if (v.merge && !v.adapter) throw usageError("--merge needs --adapter <peft-dir>");
  const loraFile = v.to !== undefined && v.adapter !== undefined && !v.merge;
  if (v.type !== undefined && (loraFile || v["to-hf"] !== undefined)) {
    throw usageError(`--type applies to GGUF model exports (--merge --to, or --to without --adapter); ${loraFile ? "a LoRA GGUF is written in f32" : "--to-hf writes f32 safetensors"}`);
  }
  if (v["to-hf"] !== undefined && v.adapter && !v.merge) {
    throw usageError("--to-hf with --adapter writes the merged model: add --merge (the adapter directory is already Hugging Face PEFT format)");
  }
  const model = await loadModelFromFlags(v);
  try {
    console.log(`[export] ${v.model} ${describeModel(model)}`);
    if (loraFile) {
      const adapter = await model.loadAdapter("export", v.adapter!);
      await model.saveAdapterGguf("export", v.to!);
      console.log(`[export] ${v.adapter} (${adapter.method.describe(adapter.config)}) -> llama.cpp LoRA GGUF ${v.to} (${MiB((await stat(v.to!)).size)})`);
      return;
    }
    if (v.merge) console.log(`[export] merged ${await mergeAdapter(model, v.adapter!)}`);
    if (v.to !== undefined) return await writeModelGguf(model, v.to, (v.type ?? "f32") as GgufExportType, "export");
    const report = await model.saveHf(v["to-hf"]!);
    const tok = report.tokenizerFiles.length ? `tokenizer files: ${report.tokenizerFiles.join(", ")}` : "no tokenizer files (the source has none to copy)";
    console.log(`[export] wrote Hugging Face directory ${v["to-hf"]} (config.json, model.safetensors; ${tok})`);
  } finally {
    model.close();
  }
}
