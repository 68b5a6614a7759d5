/**
 * The command line on a Q4_K GGUF: `train --model x-Q4_K.gguf` fine-tunes LoRA with the base kept
 * in Q4_K on the GPU (said at the start, with its bits per parameter) and lowers the eval loss; a
 * fresh `generate --adapter` process on the same file gives the text training sampled; DoRA is
 * refused with the way out (--dequantize).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GGML } from "../../src/io/ggml_quants.ts";
import { SHARED } from "../helpers.ts";
import { quantizedStories } from "./helpers.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const deno = join(root, "node_modules/.bin/deno");
const PROMPT = "ROMEO:";

function cli(args: string[]) {
  return spawnSync(deno, ["run", "-A", "src/cli/bin.ts", ...args], { cwd: root, encoding: "utf8", timeout: 300_000 });
}

Deno.test("CLI: train on a Q4_K GGUF keeps the base quantized and lowers eval loss; generate runs it with the adapter; DoRA is refused", async () => {
  const dir = await mkdtemp(join(tmpdir(), "ggml-cli-"));
  try {
    const model = await quantizedStories(GGML.Q4_K, dir);
    const out = join(dir, "run");
    const t = cli([
      "train", "--model", model, "--data", `${SHARED}data/tinyshakespeare.txt`, "--out", out, "--target-modules", "all-linear",
      "--max-steps", "6", "--seq-len", "32", "--batch-size", "4", "--lr", "5e-3", "--max-examples", "120", "--eval-fraction", "0.1",
      "--max-eval-batches", "1", "--seed", "5", "--sample", PROMPT,
    ]);
    assert.equal(t.status, 0, t.stderr + t.stdout);
    assert.match(t.stdout, /base kept in the GGUF's Q4_K: \d+ params, 4\.500 bits\/param in GPU buffers/);
    assert.match(t.stdout, /\[train\] base weights GGUF Q4_K 4\.500 bits\/param \(kept quantized\)/);
    assert.match(t.stdout, /base_ggml +\d+/, "the memory plan shows the Q4_K bytes");
    const evals = [...t.stdout.matchAll(/eval step \d+ \| loss ([\d.]+)/g)].map((m) => Number(m[1]));
    assert.ok(evals.length >= 2 && evals.at(-1)! < evals[0], `eval loss ${evals.join(" -> ")}`);
    const sampled = t.stdout.slice(t.stdout.indexOf("[sample] ") + "[sample] ".length).replace(/\n$/, "");

    const g = cli(["generate", "--model", model, "--adapter", join(out, "adapter"), "--prompt", PROMPT, "--temperature", "0.8", "--top-p", "0.9", "--seed", "1", "--max-tokens", "64"]);
    assert.equal(g.status, 0, g.stderr);
    assert.equal(g.stdout.replace(/\n$/, ""), sampled, "a fresh generate on the Q4_K file gives the sampled text");
    assert.match(g.stderr, /GGUF Q4_K kept quantized/);

    const d = cli(["train", "--model", model, "--data", `${SHARED}data/tinyshakespeare.txt`, "--out", join(dir, "dora"), "--peft-type", "dora", "--max-steps", "1"]);
    assert.equal(d.status, 1, d.stderr);
    assert.match(d.stderr, /error \[UNSUPPORTED\]: use_dora .* not supported on a quantized base \(blk\.0\.attn_q\.weight is kept Q4_K\).*--dequantize/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
