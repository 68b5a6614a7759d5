/**
 * `generate --model <gguf|hf dir> --prompt "…" [--max-tokens N] [--temperature T] [--top-k K]
 *  [--top-p P] [--seed S] [--adapter <dir>] [--compute-dtype f32|f16|auto]` — streams the completion
 *  to stdout, stats to stderr.
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { PeftError } from "../errors.ts";
import { loadModel } from "../api/model.ts";

export const GENERATE_HELP = `usage: generate --model <path.gguf|hf-dir> --prompt "text" [--max-tokens 128] [--temperature 0.8]
                [--top-k 0] [--top-p 1] [--seed S] [--adapter <peft-dir>] [--compute-dtype f32|f16|auto]`;

export function numberFlag(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) throw new PeftError("BAD_FLAG", `--${name} must be a number, got "${v}"`);
  return n;
}

/** --compute-dtype f32|f16|auto (default f32), for loadModel's computeDtype. */
export function computeDtypeFlag(v: string | undefined): "f32" | "f16" | "auto" {
  const d = v ?? "f32";
  if (d !== "f32" && d !== "f16" && d !== "auto") throw new PeftError("BAD_FLAG", `--compute-dtype must be f32, f16 or auto, got ${d}`);
  return d;
}

export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      prompt: { type: "string", default: "" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      "top-k": { type: "string" },
      "top-p": { type: "string" },
      seed: { type: "string" },
      adapter: { type: "string" },
      "compute-dtype": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) return void console.log(GENERATE_HELP);
  if (!values.model) throw new PeftError("BAD_FLAG", `--model is required\n${GENERATE_HELP}`);
  const model = await loadModel(values.model, { computeDtype: computeDtypeFlag(values["compute-dtype"]) });
  let adapter: string | undefined;
  if (values.adapter) {
    adapter = "cli";
    // deno-lint-ignore no-explicit-any
    const m = model as any;
    if (typeof m.loadAdapter !== "function") throw new PeftError("UNSUPPORTED", "this build cannot load adapters");
    await m.loadAdapter(adapter, values.adapter);
  }
  const opts = {
    maxTokens: numberFlag(values["max-tokens"], "max-tokens", 128),
    temperature: numberFlag(values.temperature, "temperature", 0.8),
    topK: numberFlag(values["top-k"], "top-k", 0),
    topP: numberFlag(values["top-p"], "top-p", 1),
    seed: numberFlag(values.seed, "seed", Date.now() % 2 ** 31),
    adapter,
  };
  process.stderr.write(`[model] ${values.model} on ${model.gpu.info.description} (${model.gpu.info.runtime}), compute dtype ${model.computeDtype}\n`);
  process.stdout.write(values.prompt);
  const stream = model.generateStream(values.prompt, opts);
  let r = await stream.next();
  while (!r.done) {
    process.stdout.write(r.value.text);
    r = await stream.next();
  }
  const s = r.value;
  process.stdout.write("\n");
  process.stderr.write(
    `[stats] prompt ${s.promptTokens} tok, generated ${s.completionTokens} tok (${s.finishReason}); ` +
      `prefill ${s.prefillMs.toFixed(0)} ms, decode ${(s.completionTokens / Math.max(1e-9, s.decodeMs / 1000)).toFixed(1)} tok/s\n`,
  );
  model.close();
}
