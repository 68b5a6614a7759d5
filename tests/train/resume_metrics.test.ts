/**
 * A resumed run's bookkeeping: metrics.jsonl's `time` continues from the checkpoint instead of
 * starting again at 0, and resuming with a different step count warns that the schedule changed.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../src/api/model.ts";
import { parseMetrics } from "../../src/train/progress.ts";
import { train } from "../../src/train/trainer.ts";
import { SHARED, STORIES, testGpu } from "../helpers.ts";

Deno.test("resume: metrics time continues; a changed step count warns about the schedule", async () => {
  const gpu = await testGpu();
  const dir = await mkdtemp(join(tmpdir(), "peft-resume-metrics-"));
  const opts = {
    adapter: "a", data: `${SHARED}data/tinyshakespeare.txt`, seqLen: 16, batchSize: 2, maxExamples: 60, evalFraction: 0.1,
    maxEvalBatches: 2, learningRate: 1e-3, seed: 2, outputDir: dir, progress: false,
  };
  const lora = { r: 2, lora_alpha: 4, target_modules: ["q_proj"] };
  try {
    const first = await loadModel(STORIES, { gpu });
    first.addAdapter("a", lora, 1);
    const stop = new AbortController();
    await train(first, { ...opts, maxSteps: 4, signal: stop.signal, onStep: (s) => s.step === 2 && stop.abort() });
    first.close();
    const before = parseMetrics(await readFile(join(dir, "metrics.jsonl"), "utf8"));
    const lastTime = before.at(-1)!.time!;
    await new Promise((r) => setTimeout(r, 300)); // idle time between runs is not training time

    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (s: string) => warnings.push(s);
    const second = await loadModel(STORIES, { gpu });
    try {
      second.addAdapter("a", lora, 1);
      await train(second, { ...opts, maxSteps: 5, resume: true });
    } finally {
      console.warn = warn;
      second.close();
    }
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(warnings[0], /checkpoint-2 comes from a run of 4 steps and this run has 5: the learning-rate schedule/);
    const after = parseMetrics(await readFile(join(dir, "metrics.jsonl"), "utf8"));
    assert.deepEqual(after.map((m) => m.step), [0, 1, 2, 3, 4, 5, 5]); // eval 0, steps 1-5, final eval
    for (let i = 1; i < after.length; i++) assert.ok(after[i].time! >= after[i - 1].time!, `time goes back at record ${i}: ${JSON.stringify(after)}`);
    const resumed = after.find((m) => m.step === 3)!;
    assert.ok(resumed.time! >= lastTime && resumed.time! < lastTime + 60, `step 3 at ${resumed.time} s, the checkpoint at ${lastTime} s`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
