/**
 * Epoch-based training as transformers does it: steps per epoch and fractional epochs, the
 * length-grouped order, eval/save by epoch, save_total_limit (deletes only older checkpoints,
 * atomically), load_best_model_at_end (the final adapter is the best checkpoint's) and early
 * stopping.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../src/api/model.ts";
import { batches, type Example, IGNORE_INDEX, lengthGroupedOrder } from "../../src/train/data.ts";
import { EpochPlan } from "../../src/train/epochs.ts";
import { rotateCheckpoints } from "../../src/train/checkpoints.ts";
import { prepareOutputDir } from "../../src/train/output_dir.ts";
import { train } from "../../src/train/trainer.ts";
import { Rng } from "../../src/util/rng.ts";
import { STORIES, testGpu } from "../helpers.ts";
import { SHAKESPEARE } from "../shared_adapter.ts";

const tmp = (p: string) => mkdtemp(join(tmpdir(), p));

Deno.test("EpochPlan: ceil(batches / accumulation) steps an epoch, fractional epochs, max_steps wins", () => {
  const p = new EpochPlan(7, 2, { epochs: 1.5 });
  assert.equal(p.stepsPerEpoch, 4);
  assert.equal(p.totalSteps, 6); // ceil(1.5 * 4)
  assert.deepEqual(p.microBatches(0), { epoch: 0, indices: [0, 1] });
  assert.deepEqual(p.microBatches(3), { epoch: 0, indices: [6] }, "the epoch's last step takes the one micro-batch left");
  assert.deepEqual(p.microBatches(5), { epoch: 1, indices: [2, 3] });
  assert.ok(p.endsEpoch(3) && !p.endsEpoch(4));
  assert.equal(p.epochAt(6), 1.5);
  assert.equal(new EpochPlan(7, 2, { epochs: 1, maxSteps: 10 }).totalSteps, 10);
  assert.equal(new EpochPlan(3, 1, { epochs: 0.1 }).totalSteps, 1);
  assert.throws(() => new EpochPlan(3, 1, { epochs: 0 }), /epochs must be a number > 0/);
});

Deno.test("group_by_length: transformers' megabatch order (longest first), batches cut to their longest row", () => {
  const lengths = Array.from({ length: 40 }, (_, i) => (i * 7) % 23 + 1);
  const order = lengthGroupedOrder(lengths, 2, new Rng(5));
  assert.deepEqual([...order].sort((a, b) => a - b), [...lengths.keys()], "a permutation");
  assert.equal(lengths[order[0]], Math.max(...lengths), "the longest example comes first");
  const mega = 2 * Math.min(Math.floor(40 / 8), 50); // megabatches of 10
  for (let m = 1; m < 4; m++) {
    const part = order.slice(m * mega, (m + 1) * mega).map((i) => lengths[i]);
    assert.deepEqual(part, [...part].sort((a, b) => b - a), `megabatch ${m} sorted longest first`);
  }
  const ex = (n: number): Example => {
    const input = new Int32Array(8), target = new Int32Array(8).fill(IGNORE_INDEX);
    for (let i = 0; i < n; i++) input[i] = i + 1, target[i] = i + 2;
    return { input, target, length: n };
  };
  const examples = [2, 8, 3, 5, 1, 6].map(ex);
  const grouped = batches(examples, 2, 1, 0, { groupByLength: true });
  const plain = batches(examples, 2, 1, 0);
  assert.ok(plain.every((b) => b.seqLen === 8));
  assert.equal(grouped[0].seqLen, 8, "longest first");
  assert.ok(grouped.some((b) => b.seqLen < 8), `shorter batches are cut: ${grouped.map((b) => b.seqLen)}`);
  for (const b of grouped) {
    assert.equal(b.input.length, b.rows * b.seqLen);
    assert.equal(b.lossTokens, [...b.target].filter((t) => t !== IGNORE_INDEX).length, "every loss token kept");
  }
});

Deno.test("rotateCheckpoints: keeps the newest N and the best, never a later checkpoint; deletes by rename, then removes (a leftover goes with the next run)", async () => {
  const dir = await tmp("peft-rotate-");
  for (const s of [5, 10, 15, 20, 999]) {
    await mkdir(join(dir, `checkpoint-${s}`));
    await writeFile(join(dir, `checkpoint-${s}`, "trainer_state.json"), "{}");
  }
  const deleted = await rotateCheckpoints(dir, { limit: 1, step: 20, keep: join(dir, "checkpoint-5") });
  assert.deepEqual(deleted.sort(), [join(dir, "checkpoint-10"), join(dir, "checkpoint-15")]);
  assert.deepEqual((await readdir(dir)).sort(), ["checkpoint-20", "checkpoint-5", "checkpoint-999"]);
  await mkdir(join(dir, "checkpoint-3.deleting-abc")); // a crash between the rename and the removal
  assert.deepEqual(await prepareOutputDir(dir), ["checkpoint-3.deleting-abc"], "the next run removes it");
  await rm(dir, { recursive: true });
});

const RUN = {
  data: SHAKESPEARE, seqLen: 16, batchSize: 4, maxExamples: 12, evalFraction: 0.2, maxEvalBatches: 1, lrScheduler: "constant" as const, maxGradNorm: 0,
  evalStrategy: "epoch" as const, saveStrategy: "epoch" as const, saveTotalLimit: 1, loadBestModelAtEnd: true, seed: 42, progress: false,
};
const LORA = { r: 8, lora_alpha: 16, target_modules: ["q_proj", "v_proj"] };

Deno.test("epochs with eval/save by epoch, save_total_limit 1, load_best_model_at_end: the final adapter is the best checkpoint's", async () => {
  const model = await loadModel(STORIES, { gpu: await testGpu() });
  const out = await tmp("peft-best-");
  await mkdir(join(out, "checkpoint-999")); // from an earlier, longer run: not ours to delete
  try {
    model.addAdapter("a", LORA, 1);
    const res = await train(model, { adapter: "a", ...RUN, learningRate: 3e-3, epochs: 6, outputDir: out });
    assert.equal(res.totalSteps, 18);
    assert.equal(res.epochs, 6);
    assert.deepEqual(res.evals.map((e) => e.step), [0, 3, 6, 9, 12, 15, 18], "an evaluation at the start and at each epoch's end");
    const later = res.evals.slice(1);
    const bestEval = later.reduce((a, b) => (b.loss < a.loss ? b : a));
    console.log(`  evals ${later.map((e) => `${e.step}:${e.loss.toFixed(4)}`).join(" ")}; best step ${bestEval.step}`);
    assert.ok(bestEval.step < 18, "this run's best is not its last step (the test needs that)");
    assert.equal(res.bestCheckpoint, join(out, `checkpoint-${bestEval.step}`));
    assert.equal(res.bestEvalLoss, bestEval.loss);
    assert.equal(res.finalEvalLoss, bestEval.loss);
    assert.deepEqual((await readdir(out)).filter((f) => f.startsWith("checkpoint")).sort(), [`checkpoint-18`, `checkpoint-999`, `checkpoint-${bestEval.step}`].sort());
    const bytes = (d: string) => readFile(join(d, "adapter_model.safetensors"));
    assert.deepEqual(await bytes(join(out, "adapter")), await bytes(res.bestCheckpoint!), "adapter/ holds the best checkpoint's weights");
    assert.notDeepEqual(await bytes(join(out, "adapter")), await bytes(join(out, "checkpoint-18")));
    const epochsLogged = (await readFile(join(out, "metrics.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l)).filter((m) => m.loss !== undefined).map((m) => m.epoch);
    assert.deepEqual(epochsLogged.slice(0, 3), [0.3333, 0.6667, 1]);
  } finally {
    model.close();
    await rm(out, { recursive: true, force: true });
  }
});

Deno.test("early stopping: patience 1 stops after the first evaluation that does not improve; the best checkpoint is loaded", async () => {
  const model = await loadModel(STORIES, { gpu: await testGpu() });
  const out = await tmp("peft-early-");
  try {
    model.addAdapter("a", LORA, 1);
    const res = await train(model, { adapter: "a", ...RUN, learningRate: 1e-2, epochs: 6, earlyStoppingPatience: 1, outputDir: out });
    const [first, second] = res.evals.slice(1);
    console.log(`  evals ${res.evals.map((e) => `${e.step}:${e.loss.toFixed(4)}`).join(" ")}`);
    assert.ok(second.loss >= first.loss, "the run's second epoch does not improve (the test needs that)");
    assert.ok(res.earlyStopped && !res.stoppedEarly);
    assert.equal(res.steps, 6);
    assert.equal(res.bestCheckpoint, join(out, "checkpoint-3"));
    const bytes = (d: string) => readFile(join(d, "adapter_model.safetensors"));
    assert.deepEqual(await bytes(join(out, "adapter")), await bytes(join(out, "checkpoint-3")));
    await assert.rejects(
      train(model, { adapter: "a", ...RUN, learningRate: 1e-2, epochs: 1, earlyStoppingPatience: 1, loadBestModelAtEnd: false, outputDir: out }),
      /earlyStoppingPatience needs loadBestModelAtEnd/,
    );
    await assert.rejects(
      train(model, { adapter: "a", ...RUN, saveStrategy: "steps", saveSteps: 2, outputDir: out }),
      /loadBestModelAtEnd needs evalStrategy and saveStrategy to match, got evalStrategy "epoch" and saveStrategy "steps"/,
    );
    await assert.rejects(
      train(model, { adapter: "a", ...RUN, saveStrategy: "steps", evalStrategy: "steps", saveSteps: 3, evalSteps: 2, outputDir: out }),
      /saveSteps to be a multiple of evalSteps .*, got saveSteps 3 and evalSteps 2/,
    );
  } finally {
    model.close();
    await rm(out, { recursive: true, force: true });
  }
});
