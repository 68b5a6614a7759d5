/**
 * `generate --model <gguf|hf dir> --prompt "…" [flags]`: streams the completion to stdout, the
 * model line and stats to stderr.
 */
import process from "node:process";
import { type Command, parseFlags } from "./flags.ts";
import { CONTEXT_FLAG, describeModel, loadModelFromFlags, MODEL_FLAGS } from "./model_flags.ts";

export const GENERATE = {
  name: "generate",
  summary: "continue a prompt with a model (and optionally a LoRA adapter); text to stdout, stats to stderr",
  usage: '--model <path.gguf|hf-dir> --prompt "text" [flags]',
  flags: {
    ...MODEL_FLAGS,
    ...CONTEXT_FLAG,
    adapter: { type: "string", value: "<peft-dir>", group: "model", description: "apply this LoRA adapter (HF PEFT directory, e.g. runs/demo/adapter), unmerged" },
    prompt: { type: "string", default: "", value: '"text"', group: "sampling", description: "text to continue (special tokens in it are not parsed); empty starts from BOS" },
    "max-tokens": { type: "int", default: 128, min: 0, units: "tokens", group: "sampling", aliases: ["max-new-tokens", "n-predict", "n"], description: "most tokens to generate" },
    temperature: { type: "number", default: 0.8, min: 0, group: "sampling", aliases: ["temp"], description: "sampling temperature; 0 = greedy" },
    "top-k": { type: "int", default: 0, min: 0, group: "sampling", description: "sample among the k most likely tokens; 0 = off" },
    "top-p": { type: "number", default: 1, min: 0, max: 1, group: "sampling", description: "nucleus sampling: the smallest set of tokens with this much probability; 1 = off" },
    seed: { type: "int", defaultText: "random", min: 0, group: "sampling", description: "random seed (same seed, same text)" },
  },
  notes: [
    "example:",
    '  npx deno task generate --model ../shared/models/stories260K/stories260K.gguf --prompt "Once upon a time" --max-tokens 32 --temperature 0',
  ],
} as const satisfies Command;

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(GENERATE, args);
  if (!f) return;
  const v = f.values;
  const model = await loadModelFromFlags(v);
  try {
    const adapter = v.adapter ? "cli" : undefined;
    if (v.adapter) await model.loadAdapter("cli", v.adapter);
    process.stderr.write(`[model] ${v.model} ${describeModel(model)}${v.adapter ? `; adapter ${v.adapter}` : ""}\n`);
    const opts = {
      maxTokens: v["max-tokens"], temperature: v.temperature, topK: v["top-k"], topP: v["top-p"],
      seed: v.seed ?? Date.now() % 2 ** 31, adapter,
    };
    process.stdout.write(v.prompt);
    const t0 = performance.now();
    const stream = model.generateStream(v.prompt, opts);
    let r = await stream.next();
    while (!r.done) {
      process.stdout.write(r.value.text);
      r = await stream.next();
    }
    const s = r.value;
    const ms = performance.now() - t0;
    process.stdout.write("\n");
    // Tokens arrive in batches per GPU round trip, so a per-token decode rate over a short run
    // says little: report the first token's latency and the whole run's rate.
    process.stderr.write(
      `[stats] prompt ${s.promptTokens} tok, generated ${s.completionTokens} tok (${s.finishReason}) in ${(ms / 1000).toFixed(2)} s ` +
        `(${(s.completionTokens / Math.max(1e-9, ms / 1000)).toFixed(1)} tok/s); first token after ${s.prefillMs.toFixed(0)} ms\n`,
    );
  } finally {
    model.close();
  }
}
