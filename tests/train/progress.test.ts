import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatDuration, formatEval, formatLr, formatThousands, MetricsWriter, parseMetrics, ProgressReporter } from "../../src/train/progress.ts";
import { PeftError } from "../../src/errors.ts";

Deno.test("formatters", () => {
  assert.equal(formatDuration(45.2), "45s");
  assert.equal(formatDuration(83), "1m23s");
  assert.equal(formatDuration(7500), "2h05m");
  assert.equal(formatDuration(NaN), "?");
  assert.equal(formatThousands(1234.4), "1,234");
  assert.equal(formatThousands(1234567), "1,234,567");
  assert.equal(formatLr(1.2e-4), "1.2e-4");
  assert.equal(formatLr(2e-4), "2.0e-4");
  assert.equal(formatLr(0), "0");
  assert.equal(formatEval(50, Math.log(8)), "eval step 50 | loss 2.0794 | ppl 8.00");
});

Deno.test("ProgressReporter: plain lines with step, loss, lr, tok/s and ETA", () => {
  let t = 0;
  const out: string[] = [];
  const p = new ProgressReporter({ total: 150, tty: false, write: (s) => out.push(s), now: () => t });
  t = 1000;
  p.step({ step: 1, loss: 2.34561, lr: 1.2e-4, tokens: 1234 });
  t = 12_000;
  p.step({ step: 12, loss: 2.3456, lr: 1.2e-4, tokens: 1234 * 11 });
  assert.equal(out[0], "step 1/150 | loss 2.3456 | lr 1.2e-4 | 1,234 tok/s | ETA 2m29s\n");
  // 12 steps in 12 s: 138 steps left at 1 s each
  assert.equal(out[1], "step 12/150 | loss 2.3456 | lr 1.2e-4 | 1,234 tok/s | ETA 2m18s\n");
  p.log("eval step 12 | loss 2.0000 | ppl 7.39");
  assert.equal(out[2], "eval step 12 | loss 2.0000 | ppl 7.39\n");
});

Deno.test("ProgressReporter: a TTY gets one rewritten line with a bar, logs on their own lines", () => {
  let t = 0;
  const out: string[] = [];
  const p = new ProgressReporter({ total: 4, tty: true, write: (s) => out.push(s), now: () => t });
  t = 500;
  p.step({ step: 2, loss: 1, lr: 1e-3, tokens: 100 });
  assert.ok(out[0].startsWith("\r\x1b[K"), "return and clear the line");
  assert.match(out[0].slice(4), /^█{12}░{12} step 2\/4 \| loss 1\.0000 \| lr 1\.0e-3 \| 200 tok\/s \| ETA 1s$/);
  p.log("eval");
  assert.deepEqual(out.slice(1), ["\n", "eval\n"]);
  p.step({ step: 4, loss: 1, lr: 0, tokens: 100 });
  assert.match(out[3], /█{24} step 4\/4/);
  assert.equal(out[4], "\n"); // the finished bar ends its line
});

Deno.test("MetricsWriter: appends JSON lines with time and eval_ppl, reads back", async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-metrics-"));
  try {
    const out = join(dir, "runs", "a");
    const w = await MetricsWriter.open(out);
    await w.write({ step: 1, loss: 3.5, lr: 1e-4, tokens_per_s: 1000 });
    const ev = await w.write({ step: 1, eval_loss: Math.log(20) });
    assert.ok(Math.abs(ev.eval_ppl! - 20) < 1e-9);
    const text = await readFile(join(out, "metrics.jsonl"), "utf8");
    const recs = parseMetrics(text + '{"step": 2, "lo'); // torn last line is skipped
    assert.equal(recs.length, 2);
    assert.deepEqual(Object.keys(recs[0]), ["step", "loss", "lr", "tokens_per_s", "time"]);
    assert.ok(typeof recs[0].time === "number" && recs[0].time >= 0);
    // reopening truncates, append keeps
    await (await MetricsWriter.open(out, { append: true })).write({ step: 2, loss: 3 });
    assert.equal(parseMetrics(await readFile(join(out, "metrics.jsonl"), "utf8")).length, 3);
    await MetricsWriter.open(out);
    assert.equal(await readFile(join(out, "metrics.jsonl"), "utf8"), "");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("MetricsWriter: an unwritable output dir is a PeftError naming it", async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-metrics-"));
  try {
    const file = join(dir, "a-file");
    await writeFile(file, "x");
    await assert.rejects(MetricsWriter.open(join(file, "run")), (e: unknown) =>
      e instanceof PeftError && e.code === "OUTPUT_DIR_NOT_WRITABLE" && e.message.includes(join(file, "run")));
    const ro = join(dir, "ro");
    await Deno.mkdir(ro);
    await chmod(ro, 0o500);
    const isRoot = Deno.uid() === 0; // root ignores permission bits
    if (!isRoot) {
      await assert.rejects(MetricsWriter.open(ro), (e: unknown) =>
        e instanceof PeftError && e.code === "OUTPUT_DIR_NOT_WRITABLE" && e.message.includes(`output directory ${ro} is not writable`));
    }
    await chmod(ro, 0o700);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
