/**
 * QLoRA fine-tuning: the CI-sized run on an NF4 base (stories260K, 40 steps of 8 x 64) ends within
 * 5% of the f32-base run's eval loss (same seed, steps, data); the memory planner's prediction is
 * within 10% of the measured peak; the paged optimizer gives the same updates as the resident one
 * under a budget that forces paging; over-budget runs are refused with a suggestion.
 */
import assert from "node:assert/strict";
import { loadModel, type Model } from "../../src/api/model.ts";
import { planTraining } from "../../src/train/memory_plan.ts";
import { train, type TrainOptions } from "../../src/train/trainer.ts";
import { PagedAdamW, ResidentAdamW } from "../../src/train/paged_adamw.ts";
import { SHARED, STORIES, testGpu } from "../helpers.ts";
import type { PeftError } from "../../src/errors.ts";

const DATA = `${SHARED}data/tinyshakespeare.txt`;
const LORA = { r: 8, lora_alpha: 16, target_modules: "all-linear", lora_dropout: 0 };

async function model(quantize?: "nf4"): Promise<Model> {
  const m = await loadModel(STORIES, { gpu: await testGpu(), quantize, doubleQuant: quantize ? true : undefined });
  m.addAdapter("a", LORA, 1);
  return m;
}

Deno.test("QLoRA fine-tune on an NF4 base ends within 5% of the f32-base run; planner within 10% of the measured peak", async () => {
  const opts: TrainOptions = {
    adapter: "a", data: DATA, seqLen: 64, batchSize: 8, maxSteps: 40, learningRate: 3e-3, evalFraction: 0.1,
    maxExamples: 600, maxEvalBatches: 4, seed: 5, progress: false,
  };
  const out: Record<string, { initial: number; final: number; plan: number; peak: number }> = {};
  for (const q of [undefined, "nf4"] as const) {
    const m = await model(q);
    try {
      const res = await train(m, opts);
      out[q ?? "f32"] = { initial: res.initialEvalLoss!, final: res.finalEvalLoss!, plan: res.plan.total, peak: res.peakGpuBytes };
      assert.ok(res.finalEvalLoss! < res.initialEvalLoss! * 0.8, `${q ?? "f32"}: eval loss ${res.initialEvalLoss} -> ${res.finalEvalLoss}`);
      const ratio = res.plan.total / res.peakGpuBytes;
      assert.ok(Math.abs(ratio - 1) <= 0.1, `${q ?? "f32"}: planned ${res.plan.total} vs measured peak ${res.peakGpuBytes}`);
    } finally {
      m.close();
    }
  }
  for (const [k, v] of Object.entries(out)) {
    console.log(`  ${k.padEnd(4)} base: eval loss ${v.initial.toFixed(4)} -> ${v.final.toFixed(4)}; GPU peak planned ${v.plan} / measured ${v.peak} bytes`);
  }
  const rel = out.nf4.final / out.f32.final - 1;
  console.log(`  NF4-base final eval loss is ${(100 * rel).toFixed(2)}% from the f32 base's`);
  assert.ok(Math.abs(rel) <= 0.05, `NF4 ${out.nf4.final} vs f32 ${out.f32.final}`);
  assert.ok(out.nf4.peak < out.f32.peak, "the NF4 base needs less GPU memory");
});

Deno.test("paged_adamw under a budget that forces paging gives the resident AdamW's updates bit for bit", async () => {
  const opts: TrainOptions = {
    adapter: "a", data: DATA, seqLen: 32, batchSize: 2, maxSteps: 3, learningRate: 1e-2, weightDecay: 0.1, maxExamples: 40,
    seed: 9, progress: false,
  };
  const resident = await model("nf4");
  const paged = await model("nf4");
  try {
    const rr = await train(resident, { ...opts, optimizer: "adamw" });
    // Budget: what the resident run needs minus most of its optimizer state (train() trims the
    // pool before planning; so do we).
    paged.gpu.trim();
    const plan = planTraining(paged, { adapter: "a", batchSize: 2, seqLen: 32, optimizer: "adamw" });
    const budget = plan.total - Math.floor(plan.classes.optimizer * 0.75);
    const pr = await train(paged, { ...opts, optimizer: "paged_adamw", gpuMemoryBudget: budget });
    assert.ok(pr.plan.optimizer.paged, "the budget forces paging");
    console.log(`  optimizer state resident ${plan.classes.optimizer} B; paged: pages of ${pr.plan.optimizer.pageElements} values, GPU peak ${pr.peakGpuBytes} <= budget ${budget}`);
    assert.ok(pr.peakGpuBytes <= budget, `peak ${pr.peakGpuBytes} over budget ${budget}`);
    assert.deepEqual(pr.losses, rr.losses, "same losses step by step");
    const a = (await resident.adapter("a").peftTensors()).tensors, b = (await paged.adapter("a").peftTensors()).tensors;
    let n = 0;
    for (const [k, t] of a) {
      const u = b.get(k)!;
      for (let i = 0; i < t.data.length; i++) {
        if (Object.is(t.data[i], u.data[i])) continue;
        assert.fail(`${k}[${i}]: resident ${t.data[i]} vs paged ${u.data[i]}`);
      }
      n += t.data.length;
    }
    console.log(`  ${n} LoRA values identical after ${opts.maxSteps} steps`);
  } finally {
    resident.close();
    paged.close();
  }
});

Deno.test("paged optimizer: pages that cut tensors apart update m, v and params exactly like the resident one", async () => {
  const gpu = await testGpu();
  const sizes = [[3, 50], [7, 9], [1, 1], [64, 33]];
  const mk = () =>
    sizes.map(([r, c], i) => ({
      key: `t${i}`,
      param: gpu.upload(Float32Array.from({ length: r * c }, (_, j) => Math.sin(j + i)), [r, c], "f32", "lora"),
      grad: gpu.upload(Float32Array.from({ length: r * c }, (_, j) => Math.cos(3 * j + i) * 0.1), [r, c], "f32", "gradients"),
    }));
  const s1 = mk(), s2 = mk();
  const res = new ResidentAdamW(gpu, s1), pag = new PagedAdamW(gpu, s2, 100);
  for (let step = 1; step <= 3; step++) {
    const o = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step, gradScale: 0.5 };
    await res.step(o);
    await pag.step(o);
  }
  assert.equal(pag.pagesStreamed, 3 * Math.ceil((150 + 63 + 1 + 64 * 33) / 100));
  for (let i = 0; i < sizes.length; i++) {
    assert.deepEqual(await gpu.readF32(s2[i].param), await gpu.readF32(s1[i].param), `param t${i}`);
    const a = await res.readState(`t${i}`), b = await pag.readState(`t${i}`);
    assert.deepEqual(b.m, a.m);
    assert.deepEqual(b.v, a.v);
  }
  res.release();
  pag.release();
  for (const s of [...s1, ...s2]) {
    s.param.release();
    s.grad.release();
  }
});

Deno.test("memory planner: an over-budget run is refused with the figures and what would fit", async () => {
  const m = await model("nf4");
  try {
    m.gpu.trim();
    const plan = planTraining(m, { adapter: "a", batchSize: 8, seqLen: 64, optimizer: "adamw" });
    const budget = Math.floor(plan.total * 0.8);
    await assert.rejects(
      train(m, { adapter: "a", data: DATA, seqLen: 64, batchSize: 8, maxSteps: 1, maxExamples: 40, progress: false, gpuMemoryBudget: budget }),
      (e: PeftError) => {
        console.log(e.message.split("\n").map((l) => "  " + l).join("\n"));
        return e.code === "GPU_BUDGET_EXCEEDED" && /over the budget/.test(e.message) && /these would fit: .*(batchSize|gradientCheckpointing)/.test(e.message) &&
          /activations/.test(e.message);
      },
    );
    await assert.rejects(train(m, { adapter: "a", data: DATA, maxSteps: 1, optimizer: "sgd" as "adamw", progress: false }), /optimizer must be one of adamw, paged_adamw/);
  } finally {
    m.close();
  }
});
