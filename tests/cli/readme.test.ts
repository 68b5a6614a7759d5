/**
 * README.md cannot drift from the CLI:
 *  - every fenced block marked `sh runnable` runs, command by command, from the repository root,
 *    and each command must exit 0. Rewrite rule, so the suite stays short: outputs under `runs/`
 *    go to a temporary directory, and step and size flags shrink (--max-steps 2, --eval-steps 1,
 *    --save-steps 1, --seq-len 32, --batch-size 4, --max-tokens 8, --max-eval-batches 1, and train
 *    gets --max-eval-batches 1 when it has none). Nothing else is changed. A fenced block whose info
 *    string says `file=<path>` (a recipe) is written to that path first, with the same `runs/` rule
 *    applied to the path and to its text.
 *  - every command line in any fenced block (runnable or not: serve, the Bun binary) names a
 *    command that exists (and its deno task), with flags that command takes.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
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

const root = fileURLToPath(new URL("../../", import.meta.url));
const COMMANDS: Record<string, Command> = Object.fromEntries([DEMO, GENERATE, TRAIN, DISTILL, EVAL, MERGE, EXPORT, SERVE, TOKENIZE, QUANTIZE].map((c) => [c.name, c]));
const readme = await readFile(join(root, "README.md"), "utf8");
const tasks = JSON.parse(await readFile(join(root, "deno.json"), "utf8")).tasks as Record<string, string>;

/** Fenced blocks: info string, text and command lines (continuations joined, comments and blanks dropped). */
function blocks(): { info: string; text: string; commands: string[] }[] {
  return [...readme.matchAll(/^```([^\n]*)\n([\s\S]*?)^```/gm)].map((m) => ({
    info: m[1].trim(),
    text: m[2],
    commands: m[2].replace(/\\\n\s*/g, " ").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#")),
  }));
}

/** `runs/` (at the start, or after a space, `=` or `,`) -> `<out>/runs/`: outputs go to the test's temporary directory. */
function intoOut(s: string, out: string): string {
  return s.replace(/(^|[\s=,])runs\//gm, `$1${out}/runs/`);
}

/** The CLI command a shell line runs (deno task X, cli.js X, bin.ts X, edge-peft X), with its words after it. */
function cliCall(line: string): { via: string; cmd: string; rest: string } | null {
  const m = /(deno task|dist\/cli\.js|src\/cli\/bin\.ts|dist\/edge-peft) ([a-z:]+)(.*)$/.exec(line);
  return m && { via: m[1], cmd: m[2], rest: m[3] };
}

Deno.test("README: every command line names a command and flags the CLI has", () => {
  const seen = new Set<string>();
  for (const b of blocks()) {
    if (b.info && !/^(sh|bash)\b/.test(b.info)) continue;
    for (const line of b.commands.flatMap((c) => c.split(/ && /))) {
      const call = cliCall(line);
      if (!call) continue;
      if (call.via === "deno task") assert.ok(Object.hasOwn(tasks, call.cmd), `README: deno task ${call.cmd} is not in deno.json`);
      const spec = COMMANDS[call.cmd];
      if (!spec) {
        assert.ok(call.via === "deno task", `README: ${line}: no command ${call.cmd}`);
        continue; // a plain task (build, compile, test)
      }
      for (const [, flag] of call.rest.matchAll(/(?:^|\s)--([a-z][a-z0-9-]*)/g)) {
        assert.ok(flag === "help" || Object.hasOwn(spec.flags, flag), `README: ${call.cmd} has no flag --${flag}: ${line}`);
      }
      seen.add(call.cmd);
    }
  }
  // demo is `npm run demo`
  for (const name of Object.keys(COMMANDS)) if (name !== "demo") assert.ok(seen.has(name), `README shows no ${name} command`);
});

/** The documented rewrite: outputs to `out`, short runs. */
function shorten(line: string, out: string): string {
  let s = intoOut(line, out);
  const small: Record<string, string> = {
    "max-steps": "2", "eval-steps": "1", "save-steps": "1", "seq-len": "32", "batch-size": "4", "max-tokens": "8", "max-eval-batches": "1",
  };
  for (const [flag, v] of Object.entries(small)) s = s.replace(new RegExp(`--${flag} \\S+`, "g"), `--${flag} ${v}`);
  if (cliCall(s)?.cmd === "train" && !s.includes("--max-eval-batches")) s += " --max-eval-batches 1";
  return s;
}

Deno.test("README: the `sh runnable` blocks run as written (shortened)", { sanitizeOps: false, sanitizeResources: false }, async () => {
  const out = await mkdtemp(join(tmpdir(), "readme-"));
  try {
    for (const b of blocks()) {
      const file = /(?:^|\s)file=(\S+)/.exec(b.info)?.[1];
      if (!file) continue;
      const path = resolve(root, intoOut(file, out));
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, intoOut(b.text, out));
    }
    const runnable = blocks().filter((b) => b.info === "sh runnable").flatMap((b) => b.commands);
    assert.ok(runnable.length >= 10, `only ${runnable.length} runnable commands`);
    for (const line of runnable) {
      const cmd = shorten(line, out);
      const t0 = performance.now();
      const r = spawnSync("bash", ["-c", cmd], {
        cwd: root,
        encoding: "utf8",
        timeout: 300_000,
        env: { ...process.env, EGL_PLATFORM: "surfaceless" },
      });
      const ms = performance.now() - t0;
      assert.equal(r.status, 0, `README command failed (exit ${r.status}):\n${cmd}\n${r.stderr}\n${r.stdout.slice(-2000)}`);
      assert.doesNotMatch(r.stderr, /^error \[/m, cmd);
      console.log(`ok ${(ms / 1000).toFixed(1)} s: ${line.slice(0, 110)}`);
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
