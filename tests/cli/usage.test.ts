/**
 * The command line as a new user meets it, as processes: every command's --help describes every
 * flag, and each user mistake ends in exactly one `error [CODE]: …` line on stderr, no stack
 * trace, exit code 2 for usage mistakes and 1 for other errors (under Deno from source, and under
 * Node from the bundle).
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { Command } from "../../src/cli/flags.ts";
import { DEMO } from "../../src/cli/demo.ts";
import { DISTILL } from "../../src/cli/distill.ts";
import { EVAL } from "../../src/cli/eval.ts";
import { EXPORT } from "../../src/cli/export.ts";
import { GENERATE } from "../../src/cli/generate.ts";
import { MERGE } from "../../src/cli/merge.ts";
import { QUANTIZE } from "../../src/cli/quantize.ts";
import { SERVE } from "../../src/cli/serve.ts";
import { TOKENIZE } from "../../src/cli/tokenize.ts";
import { TRAIN } from "../../src/cli/train.ts";
import { STORIES } from "../helpers.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const deno = `${root}node_modules/.bin/deno`;
const COMMANDS: Command[] = [DEMO, GENERATE, TRAIN, DISTILL, EVAL, MERGE, EXPORT, SERVE, TOKENIZE, QUANTIZE];

function cli(args: string[], runtime: "deno" | "node" = "deno") {
  const [bin, pre] = runtime === "deno" ? [deno, ["run", "-A", "src/cli/bin.ts"]] : ["node", ["dist/cli.js"]];
  const r = spawnSync(bin, [...pre, ...args], { cwd: root, encoding: "utf8", timeout: 120_000, env: { ...process.env, EGL_PLATFORM: "surfaceless" } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exactly one non-empty stderr line, `error [code]: …` matching `message`, no stack frames, and the exit code. */
function assertOneError(r: ReturnType<typeof cli>, exit: number, code: string, message: RegExp, what: string) {
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  assert.equal(lines.length, 1, `${what}: stderr should be one line:\n${r.stderr}`);
  assert.match(lines[0], new RegExp(`^error \\[${code}\\]: `), what);
  assert.match(lines[0], message, what);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `${what}: stack trace`);
  assert.equal(r.code, exit, `${what}: exit code`);
}

Deno.test("every command's --help lists every flag with a description, and exits 0", () => {
  for (const cmd of COMMANDS) {
    const r = cli([cmd.name, "--help"]);
    assert.equal(r.code, 0, `${cmd.name} --help: ${r.stderr}`);
    assert.ok(r.stdout.startsWith(`${cmd.name}: ${cmd.summary}\n`), `${cmd.name} --help starts with its summary`);
    for (const [name, flag] of Object.entries(cmd.flags)) {
      assert.ok(flag.description.length >= 10, `${cmd.name} --${name} has a description`);
      const line = r.stdout.split("\n").findIndex((l) => l.trimStart().startsWith(`--${name}`) && /^(?:[ <]|$)/.test(l.trimStart()[name.length + 2] ?? ""));
      assert.ok(line >= 0, `${cmd.name} --help shows --${name}`);
      const text = r.stdout.split("\n").slice(line, line + 2).join(" ");
      assert.ok(text.includes(flag.description), `${cmd.name} --${name}: description shown`);
      if (flag.default !== undefined || flag.defaultText !== undefined) assert.match(text, /default /, `${cmd.name} --${name}: default shown`);
      if (flag.units) assert.ok(text.includes(flag.units), `${cmd.name} --${name}: units shown`);
    }
  }
  const top = cli(["--help"]);
  assert.equal(top.code, 0);
  for (const cmd of COMMANDS) assert.match(top.stdout, new RegExp(`\\n {2}${cmd.name} +\\S`), `overview lists ${cmd.name}`);
});

const model = ["--model", STORIES];
const MISTAKES: [string[], RegExp][] = [
  [["train", ...model, "--data", "x.txt", "--out", "o", "--learning-rate", "1e-3"], /unknown flag --learning-rate \(did you mean --lr\?\)/],
  [["generate", ...model, "--max-new-tokens", "5"], /unknown flag --max-new-tokens \(did you mean --max-tokens\?\)/],
  [["train", "--iters", "5"], /unknown flag --iters \(did you mean --max-steps\?\)/],
  [["serve", ...model, "--bogus"], /unknown flag --bogus; see serve --help/],
  [["train", ...model, "--data", "x.txt", "--out", "o", "--lr", "-1e-3"], /--lr must be >= 0, got -1e-3/], // a negative value is a value
  [["generate", ...model, "--top-k", "abc"], /--top-k must be a number, got "abc"/],
  [["generate", ...model, "--temperature"], /--temperature needs a value/],
  [["generate", "--prompt", "hi"], /--model is required/],
  [["generate", ...model, "--double-quant"], /--double-quant and --blocksize need --quantize/],
  [["train", ...model, "--data", "x.txt", "--out", "o", "--optimizer", "sgd"], /--optimizer must be one of adamw, paged_adamw, adamw_8bit, got "sgd"/],
  [["train", ...model, "--data", "x.txt", "--out", "o", "--gpu-memory-budget", "lots"], /--gpu-memory-budget: "lots" is not a size/],
  [["merge", ...model, "--adapter", "a"], /--out is required/],
  [["merge", ...model, "--adapter", "a", "--out", "m.gguf", "--dtype", "f16"], /unknown flag --dtype \(did you mean --type\?\)/],
  [["export", ...model, "--adapter", "a", "--to", "a.gguf", "--type", "q8_0"], /--type applies to GGUF model exports/],
  [["quantize", ...model, "--out", "q.safetensors", "--double-quant", "true"], /unexpected argument "true" \(--double-quant takes no value\)/],
  [["serve", ...model, "--port", "70000"], /--port must be <= 65535, got 70000/],
  [["tokenize", "--vocab", STORIES, "--json=1"], /--json takes no value/],
  [["demo", "--max-steps", "0"], /--max-steps must be >= 1, got 0/],
  [["demo", "extra.gguf"], /unexpected argument "extra.gguf"/],
  [["distill", ...model, "--data", "x.txt", "--out", "o", "--beta", "2"], /--beta must be <= 1, got 2/],
  [["distill", ...model, "--data", "x.txt", "--out", "o", "--teacher-adapter", "a", "--teacher-logits", "t.safetensors"], /give --teacher-logits or --teacher\/--teacher-adapter, not both/],
  [["eval", ...model, "--adapter", "a"], /--data is required/],
  [["train", ...model, "--data", "x.txt", "--out", "o", "--epochs", "0"], /--epochs must be > 0, got 0/],
  [["train", ...model, "--data", "x.txt", "--out", "o", "--save-strategy", "best"], /--save-strategy must be one of steps, epoch, no, got "best"/],
  [["genrate"], /unknown command "genrate" \(did you mean generate\?\)/],
  [[], /no command given/],
];

Deno.test("user mistakes: one `error [USAGE]` line each, exit code 2, no stack trace", () => {
  for (const [args, message] of MISTAKES) assertOneError(cli(args), 2, "USAGE", message, args.join(" "));
});

Deno.test("other errors: one `error [CODE]` line, exit code 1, no stack trace", () => {
  assertOneError(cli(["generate", "--model", "missing.gguf"]), 1, "FILE_NOT_FOUND", /model not found: missing\.gguf/, "missing model");
  assertOneError(
    cli(["train", ...model, "--data", "x.txt", "--out", "o", "--chat-template", "no-such.jinja"]),
    1,
    "FILE_NOT_FOUND",
    /--chat-template no-such\.jinja: no such file, and not one of plain, chatml/,
    "missing chat template",
  );
  assertOneError(cli(["train", "--config", "missing.yaml"]), 1, "FILE_NOT_FOUND", /--config missing\.yaml: no such file/, "missing recipe");
});

Deno.test("under Node (the bundle): the same one line and exit codes", () => {
  execFileSync("node", ["scripts/bundle.mjs"], { cwd: root, stdio: "ignore" });
  assertOneError(cli(["train", "--learning-rate", "1"], "node"), 2, "USAGE", /did you mean --lr\?/, "node: unknown flag");
  assertOneError(cli(["tokenize", "--vocab", "missing.gguf", "hi"], "node"), 1, "TOKENIZER_FILE", /missing\.gguf/, "node: missing vocab");
  const help = cli(["merge", "--help"], "node");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--type <f32\|f16\|q8_0\|q4_k>/);
});
