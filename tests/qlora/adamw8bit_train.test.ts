/**
 * adamw_8bit on the real model: a short QLoRA run (NF4 base, stories260K) ends within 5% of
 * AdamW's eval loss with the same seed, with under 35% of AdamW's optimizer GPU bytes; resuming
 * from a checkpoint (f32 m and v quantized back) reproduces the uninterrupted run's losses exactly.
 */
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type Model } from "../../src/api/model.ts";
import { train, type TrainOptions } from "../../src/train/trainer.ts";
import { SHARED, STORIES, testGpu } from "../helpers.ts";

const DATA = `${SHARED}data/tinyshakespeare.txt`;
const LORA = { r: 8, lora_alpha: 16, target_modules: "all-linear", lora_dropout: 0 };

async function model(seed = 1): Promise<Model> {
  const m = await loadModel(STORIES, { gpu: await testGpu(), quantize: "nf4", doubleQuant: true });
  m.addAdapter("a", LORA, seed);
  return m;
}

Deno.test("adamw_8bit: QLoRA run ends within 5% of AdamW's eval loss with < 35% of its optimizer GPU bytes", async () => {
  const opts: TrainOptions = {
    adapter: "a", data: DATA, seqLen: 64, batchSize: 8, maxSteps: 25, learningRate: 3e-3, evalFraction: 0.1,
    maxExamples: 600, maxEvalBatches: 4, seed: 5, progress: false,
  };
  const out: Record<string, { initial: number; final: number; planned: number; measured: number; losses: number[] }> = {};
  for (const optimizer of ["adamw", "adamw_8bit"] as const) {
    const m = await model();
    try {
      let measured = 0;
      const res = await train(m, { ...opts, optimizer, onStep: () => measured = Math.max(measured, m.memoryReport().optimizer) });
      assert.equal(res.plan.optimizer.name, optimizer);
      out[optimizer] = { initial: res.initialEvalLoss!, final: res.finalEvalLoss!, planned: res.plan.classes.optimizer, measured, losses: res.losses };
    } finally {
      m.close();
    }
  }
  for (const [k, v] of Object.entries(out)) {
    console.log(`  ${k.padEnd(10)} eval loss ${v.initial.toFixed(4)} -> ${v.final.toFixed(6)}; optimizer GPU bytes planned ${v.planned}, measured ${v.measured}`);
  }
  const a = out.adamw, b = out.adamw_8bit;
  const rel = b.final / a.final - 1;
  console.log(`  adamw_8bit final eval loss is ${(100 * rel).toFixed(4)}% from adamw's; optimizer bytes ${(100 * b.measured / a.measured).toFixed(1)}% of adamw's`);
  assert.equal(b.initial, a.initial, "same start");
  assert.notDeepEqual(b.losses.slice(1), a.losses.slice(1), "different optimizers, different updates");
  assert.ok(b.final < 0.8 * b.initial, `adamw_8bit trains: ${b.initial} -> ${b.final}`);
  assert.ok(Math.abs(rel) <= 0.05, `adamw_8bit ${b.final} vs adamw ${a.final}`);
  assert.equal(b.planned, b.measured, "the planner predicts the 8-bit state exactly");
  assert.ok(b.measured < 0.35 * a.measured, `optimizer bytes ${b.measured} vs ${a.measured}`);
});

Deno.test("adamw_8bit: resuming from a checkpoint reproduces the uninterrupted run's losses exactly", async () => {
  const opts = {
    adapter: "a", data: DATA, seqLen: 32, batchSize: 4, learningRate: 5e-3, weightDecay: 0.01, maxSteps: 6, seed: 3,
    maxExamples: 120, evalFraction: 0, optimizer: "adamw_8bit" as const, progress: false,
  };
  const full = await model();
  const ref = await train(full, { ...opts, outputDir: await mkdtemp(join(tmpdir(), "peft-8bit-full-")) });
  full.close();

  const dir = await mkdtemp(join(tmpdir(), "peft-8bit-resume-"));
  const first = await model();
  const stop = new AbortController();
  const part = await train(first, { ...opts, outputDir: dir, signal: stop.signal, onStep: (s) => s.step === 3 && stop.abort() });
  first.close();
  assert.equal(part.steps, 3);

  const second = await model(99); // different init: the checkpoint overwrites it
  const rest = await train(second, { ...opts, outputDir: dir, resume: true });
  second.close();
  console.log(`  losses ${ref.losses.map((l) => l.toFixed(4)).join(", ")}; resumed after step 3: identical`);
  assert.deepEqual([...part.losses, ...rest.losses], ref.losses);
});
