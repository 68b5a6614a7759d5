/**
 * `eval --model <gguf|hf dir> --data <txt|jsonl> [--adapter dir] [--compare dir,dir]`: loss,
 * perplexity, tokens and tokens/s of the base model and each adapter on the same data, masked as
 * training masks it, in one table (or JSON lines with --json).
 */
import { evaluateExamples, type EvalResult, loadEvalExamples } from "../train/evaluate.ts";
import { chatTemplateFlag, resolveChatTemplate } from "./chat_template_flag.ts";
import { type Command, parseFlags } from "./flags.ts";
import { describeModel, loadModelFromFlags, MODEL_FLAGS } from "./model_flags.ts";

const data = "data";

export const EVAL = {
  name: "eval",
  summary: "loss, perplexity, tokens and tokens/s of a model, with or without adapters, on a text or JSONL file (masked as training masks it)",
  usage: "--model <path.gguf|hf-dir> --data <file.txt|file.jsonl> [--adapter <dir>] [--compare <dir,dir,...>] [flags]",
  flags: {
    ...MODEL_FLAGS,
    data: {
      type: "string", required: true, value: "<file.txt|file.jsonl>", group: data,
      description: 'plain text (every token scored once), or JSONL of {"text"}, {"prompt","completion"} (the completion scored) or {"messages"} (assistant turns scored)',
    },
    adapter: { type: "string", value: "<peft-dir>", group: "model", description: "evaluate the model with this adapter (any PEFT method) beside the base model" },
    compare: { type: "string", value: "<dir,dir,...>", group: "model", description: "more adapters on the same data: one table, a row each (the base model first)" },
    "seq-len": { type: "int", default: 256, min: 1, units: "tokens", group: data, aliases: ["max-seq-length", "cutoff-len"], description: "tokens per sequence (cut to the model's context)" },
    stride: { type: "int", min: 1, defaultText: "--seq-len", units: "tokens", group: data, description: "plain text: distance between window starts (overlapping windows score each token once)" },
    "batch-size": { type: "int", default: 8, min: 1, units: "sequences", group: data, description: "sequences per forward pass" },
    "max-examples": { type: "int", min: 1, defaultText: "all", group: data, description: "use at most this many sequences (text) or records (JSONL) from the start of the file" },
    packing: { type: "boolean", group: data, description: "JSONL: pack short records into full sequences" },
    "chat-template": chatTemplateFlag(data, 'for {"messages"} records'),
    json: { type: "boolean", group: "output", description: "print one JSON object a row (model, loss, perplexity, loss_tokens, tokens, tokens_per_s) instead of the table" },
  },
  notes: [
    "example:",
    "  npx deno task eval --model ../shared/models/stories260K/stories260K.gguf --data ../shared/data/tinyshakespeare.txt \\",
    "      --adapter runs/shakespeare/adapter --max-examples 64 --seq-len 128",
  ],
} as const satisfies Command;

function table(rows: { name: string; r: EvalResult }[]): string {
  const head = ["model", "loss", "perplexity", "scored tokens", "tokens", "tokens/s"];
  const cells = rows.map(({ name, r }) => [name, r.loss.toFixed(4), r.perplexity.toFixed(2), String(r.lossTokens), String(r.tokens), r.tokensPerSecond.toFixed(1)]);
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => `| ${c.map((x, i) => (i === 0 ? x.padEnd(width[i]) : x.padStart(width[i]))).join(" | ")} |`;
  return [line(head), `| ${width.map((w, i) => (i === 0 ? "-".repeat(w) : "-".repeat(w - 1) + ":")).join(" | ")} |`, ...cells.map(line)].join("\n");
}

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(EVAL, args);
  if (!f) return;
  const v = f.values;
  const template = await resolveChatTemplate(v["chat-template"]);
  const model = await loadModelFromFlags(v);
  try {
    const adapters = [v.adapter, ...(v.compare?.split(",").map((s) => s.trim()).filter(Boolean) ?? [])].filter((a): a is string => a !== undefined);
    const names = adapters.map((_, i) => `eval${i}`);
    for (const [i, dir] of adapters.entries()) await model.loadAdapter(names[i], dir);
    const seqLen = Math.min(v["seq-len"], model.config.contextLength);
    const { examples, stats } = await loadEvalExamples(model, v.data, {
      seqLen, stride: v.stride, maxExamples: v["max-examples"], packing: v.packing, chatTemplate: template,
    });
    if (!v.json) {
      console.log(`[eval] ${v.model} ${describeModel(model)}`);
      console.log(`[eval] ${v.data}: ${examples.length} sequences of ${seqLen} tokens, ${stats.eval.lossTokens} scored (masked as training masks them)`);
    }
    const rows: { name: string; r: EvalResult }[] = [];
    for (const [i, label] of ["base", ...adapters].entries()) {
      const r = await evaluateExamples(model, examples, { adapter: i === 0 ? undefined : names[i - 1], batchSize: v["batch-size"] });
      rows.push({ name: label, r });
      if (v.json) {
        console.log(JSON.stringify({ model: label, loss: r.loss, perplexity: r.perplexity, loss_tokens: r.lossTokens, tokens: r.tokens, tokens_per_s: r.tokensPerSecond }));
      }
    }
    if (!v.json) console.log(table(rows));
  } finally {
    model.close();
  }
}
