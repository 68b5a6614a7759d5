import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  formatDuration,
  formatEval,
  formatLr,
  formatThousands,
  meanEvalSeconds,
  MetricsWriter,
  parseMetrics,
  ProgressReporter,
} from "../../src/train/progress.ts";
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

Deno.test("ProgressReporter: tok/s leaves out evaluation time; the ETA adds the evaluations still to come", () => {
  let t = 0;
  const out: string[] = [];
  // 10 steps, eval every 4 steps (after steps 4 and 8) and at the end
  const p = new ProgressReporter({ total: 10, tty: false, write: (s) => out.push(s), now: () => t, evalSteps: 4 });
  t = 5000; // the initial evaluation took 5 s
  p.evaluated(5);
  t = 7000; // one 2-s step of 1000 tokens
  p.step({ step: 1, loss: 1, lr: 1e-3, tokens: 1000 });
  // 500 tok/s (not 1000/7); ETA: 9 steps x 2 s + 3 evals (steps 4, 8, end) x 5 s
  assert.equal(out[0], "step 1/10 | loss 1.0000 | lr 1.0e-3 | 500 tok/s | ETA 33s\n");
  t = 13_000;
  p.step({ step: 4, loss: 1, lr: 1e-3, tokens: 3000 });
  t = 16_000;
  p.evaluated(3); // evals now average 4 s; 2 left (step 8, end)
  t = 24_000;
  p.step({ step: 8, loss: 1, lr: 1e-3, tokens: 4000 });
  assert.equal(out[2], "step 8/10 | loss 1.0000 | lr 1.0e-3 | 500 tok/s | ETA 12s\n"); // 2 x 2 s + 2 x 4 s
  assert.equal(p.eta(10), 4, "the last step still has the final evaluation ahead");
});

Deno.test("ProgressReporter: a resumed run's rates and ETA count its own steps, evals at the earlier run's cost", () => {
  let t = 0;
  const out: string[] = [];
  const p = new ProgressReporter({ total: 100, startStep: 90, tty: false, write: (s) => out.push(s), now: () => t, evalSteps: 0, evalSecondsEstimate: 7 });
  t = 2000;
  p.step({ step: 91, loss: 1, lr: 1e-3, tokens: 800 });
  // 9 steps x 2 s + the final eval at the earlier runs' 7 s (not 2 s / 91 steps)
  assert.equal(out[0], "step 91/100 | loss 1.0000 | lr 1.0e-3 | 400 tok/s | ETA 25s\n");
});

Deno.test("meanEvalSeconds: from metrics records, each eval's time less the record's before it", () => {
  assert.equal(meanEvalSeconds([{ step: 1, loss: 2, time: 1 }]), undefined);
  assert.equal(meanEvalSeconds([{ step: 0, eval_loss: 3, time: 4 }, { step: 1, loss: 2, time: 5 }, { step: 1, eval_loss: 2, time: 11 }]), 5);
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

Deno.test("MetricsWriter: startTime continues `time` across a resume", async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-metrics-"));
  try {
    const w = await MetricsWriter.open(dir, { startTime: 120 });
    const r = await w.write({ step: 51, loss: 2 });
    assert.ok(r.time! >= 120 && r.time! < 130, `time ${r.time}`);
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
