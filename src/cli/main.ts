/**
 * Command-line entry: `main.ts <command> [flags]`. Each command lives in its own file with an
 * exported `main(args)`; they load on demand so `tokenize` never starts a GPU.
 *
 * Every failure ends in exactly one line on stderr, `error [CODE]: message`, and an exit code:
 * 2 for usage mistakes (PeftError code USAGE: unknown flags, bad values, missing required flags),
 * 1 for everything else. Unexpected errors (bugs) print their stack only with EDGE_PEFT_DEBUG=1.
 */
import process from "node:process";
import { PeftError } from "../errors.ts";
import { editDistance } from "./flags.ts";

interface CommandModule {
  main(args: string[]): Promise<void>;
}

const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  demo: { summary: "the quick start: sample, fine-tune on Shakespeare, sample again", load: () => import("./demo.ts") },
  generate: { summary: "continue a prompt (optionally with a LoRA adapter)", load: () => import("./generate.ts") },
  train: { summary: "fine-tune an adapter (any PEFT method; QLoRA with --quantize; a YAML recipe with --config)", load: () => import("./train.ts") },
  distill: { summary: "distill a teacher model into a student adapter (generalized JSD, TRL's semantics)", load: () => import("./distill.ts") },
  eval: { summary: "loss, perplexity and tokens/s of a model and its adapters on a data file", load: () => import("./eval.ts") },
  merge: { summary: "merge an adapter into its base and save a GGUF", load: () => import("./merge.ts") },
  export: { summary: "adapter as llama.cpp LoRA GGUF; (merged) model as GGUF f32/f16/q8_0/q4_k or HF directory", load: () => import("./export.ts") },
  serve: { summary: "OpenAI-compatible server for the model and its adapters", load: () => import("./serve.ts") },
  tokenize: { summary: "token ids of a text, or the text of ids", load: () => import("./tokenize.ts") },
  quantize: { summary: "write a GGUF's linears as bitsandbytes NF4/FP4 safetensors", load: () => import("./quantize.ts") },
};

export const USAGE_EXIT = 2;

function overview(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length)) + 2;
  return [
    "usage: <command> [flags]   (every command takes --help)",
    "",
    "commands:",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`),
  ].join("\n");
}

/** The one line a failure prints, and its exit code. */
export function describeFailure(e: unknown): { line: string; code: number } {
  if (e instanceof PeftError) return { line: `error [${e.code}]: ${e.message.split("\n").join(" ")}`, code: e.code === "USAGE" ? USAGE_EXIT : 1 };
  const message = e instanceof Error ? `${e.name === "Error" ? "" : `${e.name}: `}${e.message}` : String(e);
  return { line: `error [INTERNAL]: ${message.split("\n").join(" ")} (this is a bug; EDGE_PEFT_DEBUG=1 prints the stack)`, code: 1 };
}

export async function runCli(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === "--help" || cmd === "-h") {
    console.log(overview());
    return 0;
  }
  if (!cmd || !Object.hasOwn(COMMANDS, cmd)) {
    const near = cmd ? Object.keys(COMMANDS).find((c) => editDistance(cmd, c) <= 2) : undefined;
    const what = cmd ? `unknown command ${JSON.stringify(cmd)}${near ? ` (did you mean ${near}?)` : ""}` : "no command given";
    console.error(`error [USAGE]: ${what}; commands: ${Object.keys(COMMANDS).join(", ")} (each takes --help)`);
    return USAGE_EXIT;
  }
  try {
    await (await COMMANDS[cmd].load()).main(rest);
    return 0;
  } catch (e) {
    const f = describeFailure(e);
    console.error(f.line);
    if (!(e instanceof PeftError) && process.env.EDGE_PEFT_DEBUG) console.error(e);
    return f.code;
  }
}
