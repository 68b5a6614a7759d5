/**
 * Knowledge distillation: a teacher (stories260K + a Shakespeare LoRA trained here) distilled into
 * a fresh student adapter; the pass's loss against the CPU reference of TRL's JSD on the models'
 * own logits; the adapter's gradient against finite differences; the precomputed top-k teacher
 * file; refusals.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type Model } from "../../src/api/model.ts";
import { crossEntropyReference } from "../../src/kernels/cross_entropy.ts";
import { generalizedJsdReference } from "../../src/kernels/distill.ts";
import { batchLogits, distillEvalLoss, distillLossAndGrads, type TrainBatch } from "../../src/model/llama_train.ts";
import { distill, distillObjective, saveTeacherLogits } from "../../src/train/distill.ts";
import { evaluate } from "../../src/train/evaluate.ts";
import { train } from "../../src/train/trainer.ts";
import { randomLlamaGGUF } from "../../bench/lib/random_llama.ts";
import { randn, STORIES, testGpu } from "../helpers.ts";
import { SHAKESPEARE } from "../shared_adapter.ts";

const LORA = { r: 8, lora_alpha: 16, target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"] };
const DATA = { data: SHAKESPEARE, seqLen: 32, batchSize: 4, maxExamples: 400, progress: false };

let teacher: Promise<Model> | null = null;
/** stories260K with a "teacher" LoRA fine-tuned on Shakespeare (16 steps), shared by the tests here. */
function withTeacher(): Promise<Model> {
  return teacher ??= (async () => {
    const model = await loadModel(STORIES, { gpu: await testGpu() });
    model.addAdapter("teacher", LORA, 1);
    await train(model, { adapter: "teacher", ...DATA, learningRate: 1e-2, maxSteps: 16, seed: 1 });
    return model;
  })();
}

/** A held-out piece of tinyshakespeare (its end; training reads the first 400 windows). */
async function heldOut(): Promise<string> {
  const text = await readFile(SHAKESPEARE, "utf8");
  const path = join(await mkdtemp(join(tmpdir(), "peft-kd-")), "held_out.txt");
  await writeFile(path, text.slice(-6000));
  return path;
}

Deno.test("distillation: a fresh student halves (at least) its KL to the teacher; its held-out Shakespeare loss moves toward the teacher's", async () => {
  const model = await withTeacher();
  model.addAdapter("student", LORA, 7);
  try {
    const res = await distill(model, {
      adapter: "student", teacher: { model, adapter: "teacher" }, beta: 0, ...DATA, learningRate: 1e-2, maxSteps: 12, evalFraction: 0.1, maxEvalBatches: 2, seed: 2,
    });
    const kl0 = res.initialEvalLoss!, kl1 = res.finalEvalLoss!;
    const data = await heldOut();
    const ev = async (adapter?: string) => (await evaluate(model, data, { seqLen: 64, adapter })).loss;
    const [base, student, teach] = [await ev(), await ev("student"), await ev("teacher")];
    console.log(`  KL(teacher ‖ student) ${kl0.toFixed(4)} -> ${kl1.toFixed(4)} (${(100 * (1 - kl1 / kl0)).toFixed(1)}% lower); ` +
      `held-out loss: base ${base.toFixed(4)}, student ${student.toFixed(4)}, teacher ${teach.toFixed(4)}`);
    assert.ok(kl1 <= 0.5 * kl0, `KL ${kl0} -> ${kl1} is not 50% lower`);
    assert.ok(Math.abs(student - teach) < 0.5 * Math.abs(base - teach), "the student's loss moved more than halfway to the teacher's");
  } finally {
    model.deleteAdapter("student");
  }
});

/** A batch of B rows of T tokens from the file's start, every 3rd target masked. */
async function smallBatch(model: Model, B: number, T: number): Promise<TrainBatch> {
  const ids = model.tokenizer.encode((await readFile(SHAKESPEARE, "utf8")).slice(0, 4000), { addSpecial: false }).slice(0, B * (T + 1));
  const inputs: number[] = [], targets: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      inputs.push(ids[b * (T + 1) + t]);
      targets.push(t % 3 === 1 ? -100 : ids[b * (T + 1) + t + 1]);
    }
  }
  return { B, T, inputs, targets };
}

Deno.test("the distillation pass's per-row loss equals the f64 reference of TRL's JSD on the models' logits (beta 0, 0.5, 1; temperature 2; CE mixed in)", async () => {
  const model = await withTeacher();
  model.addAdapter("student", LORA, 3);
  try {
    const gpu = model.gpu, V = model.config.vocabSize;
    const batch = await smallBatch(model, 3, 9);
    const t = { llama: model.llama, hooks: model.peft.hooksFor("teacher") }, s = { llama: model.llama, hooks: model.peft.hooksFor("student") };
    const read = async (m: typeof t) => {
      const l = batchLogits(m, batch);
      const out = await gpu.readF32(l);
      l.release();
      return out;
    };
    const [sl, tl] = [await read(s), await read(t)];
    const N = batch.B * batch.T, targets = Int32Array.from(batch.targets);
    for (const beta of [0, 0.5, 1]) {
      for (const [temperature, ceWeight] of [[2, 0], [1, 0], [2, 0.25]]) {
        const jsd = generalizedJsdReference(sl, tl, targets, { N, V, beta, temperature }).loss;
        const ce = crossEntropyReference(sl, targets, { N, V }).loss;
        const want = jsd.map((v, i) => (1 - ceWeight) * v + ceWeight * ce[i]);
        const got = distillEvalLoss(model.llama, s.hooks, batch, t, { beta, temperature, ceWeight });
        const rows = await gpu.readF32(got);
        got.release();
        rows.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-5, `beta ${beta} T ${temperature} ce ${ceWeight} row ${i}: ${v} vs ${want[i]}`));
      }
    }
  } finally {
    model.deleteAdapter("student");
  }
});

Deno.test("the student adapter's distillation gradient matches finite differences of the loss (directional, beta 0.5, temperature 2, CE 0.25)", async () => {
  const model = await withTeacher();
  const a = model.addAdapter("student", LORA, 5);
  try {
    const gpu = model.gpu;
    const batch = await smallBatch(model, 2, 8);
    const teacherHooks = { llama: model.llama, hooks: model.peft.hooksFor("teacher") };
    const d = { beta: 0.5, temperature: 2, ceWeight: 0.25 };
    const slots = a.trainable();
    // Non-zero lora_B (a fresh adapter's is zero) so every parameter's gradient is exercised.
    const theta = slots.map((s, i) => randn(s.param.size, 100 + i, 0.05));
    const dir = slots.map((s, i) => randn(s.param.size, 200 + i));
    const set = (eps: number) => slots.forEach((s, i) => gpu.write(s.param, theta[i].map((v, j) => v + eps * dir[i][j])));
    const lossAt = async (eps: number) => {
      set(eps);
      const t = distillEvalLoss(model.llama, a.hooks(), batch, teacherHooks, d);
      const v = (await gpu.readF32(t)).reduce((x, y) => x + y, 0);
      t.release();
      return v;
    };
    set(0);
    for (const s of slots) gpu.clear(s.grad);
    distillLossAndGrads(model.llama, a.hooks(), batch, teacherHooks, d, { seed: 0, gradScale: 1 }).release();
    let analytic = 0;
    for (const [i, s] of slots.entries()) {
      const g = await gpu.readF32(s.grad);
      g.forEach((v, j) => analytic += v * dir[i][j]);
    }
    const eps = 3e-4; // curvature error ~eps² (1e-3 gives ~1%); f32 rounding of the summed loss stays ~1e-5/eps
    const fd = (await lossAt(eps) - await lossAt(-eps)) / (2 * eps);
    console.log(`  directional derivative: analytic ${analytic.toExponential(5)}, finite differences ${fd.toExponential(5)}`);
    assert.ok(Math.abs(fd - analytic) <= 5e-3 * Math.abs(analytic) + 1e-3, `fd ${fd} vs analytic ${analytic}`);
  } finally {
    model.deleteAdapter("student");
  }
});

Deno.test("a precomputed top-k teacher file: with k = V the loss equals the in-step teacher's; top-16 trains; wrong data or temperature is refused", async () => {
  const model = await withTeacher();
  const dir = await mkdtemp(join(tmpdir(), "peft-topk-"));
  model.addAdapter("student", LORA, 9);
  try {
    const V = model.config.vocabSize;
    const run = { ...DATA, maxExamples: 24, evalFraction: 0.25, seed: 4 };
    const full = join(dir, "full.safetensors"), top16 = join(dir, "top16.safetensors");
    const saved = await saveTeacherLogits(full, { teacher: { model, adapter: "teacher" }, ...run, topK: V, temperature: 2 });
    assert.ok(saved.sequences >= 20, `${saved.sequences} sequences`);
    await saveTeacherLogits(top16, { teacher: { model, adapter: "teacher" }, ...run, topK: 16, temperature: 2 });
    const inStep = await distill(model, { adapter: "student", teacher: { model, adapter: "teacher" }, ...run, beta: 0.5, temperature: 2, maxSteps: 1, learningRate: 0 });
    const fromFile = await distill(model, { adapter: "student", teacher: { logitsFile: full }, ...run, beta: 0.5, temperature: 2, maxSteps: 1, learningRate: 0 });
    assert.ok(Math.abs(fromFile.initialEvalLoss! - inStep.initialEvalLoss!) <= 1e-5 * inStep.initialEvalLoss!, `${fromFile.initialEvalLoss} vs ${inStep.initialEvalLoss}`);
    assert.ok(Math.abs(fromFile.losses[0] - inStep.losses[0]) <= 1e-5 * inStep.losses[0]);
    const short = await distill(model, { adapter: "student", teacher: { logitsFile: top16 }, ...run, beta: 0.5, temperature: 2, maxSteps: 3, learningRate: 1e-2 });
    assert.ok(short.losses.every(Number.isFinite) && short.finalEvalLoss! < short.initialEvalLoss!, `top-16: eval ${short.initialEvalLoss} -> ${short.finalEvalLoss}`);
    await assert.rejects(
      distill(model, { adapter: "student", teacher: { logitsFile: full }, ...run, stride: 16, beta: 0.5, temperature: 2, maxSteps: 1 }),
      /full\.safetensors was made for other data/,
    );
    await assert.rejects(
      distill(model, { adapter: "student", teacher: { logitsFile: full }, ...run, beta: 0.5, temperature: 1, maxSteps: 1 }),
      /log-probabilities at temperature 2; distill with temperature 2/,
    );
  } finally {
    model.deleteAdapter("student");
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("distillation refuses a teacher of another vocabulary and bad settings, naming them", async () => {
  const model = await withTeacher();
  const other = await loadModel(await randomLlamaGGUF({ dim: 64, nLayers: 1, nHeads: 8, nKvHeads: 4, hiddenDim: 172, vocab: 600, contextLength: 256 }), { gpu: model.gpu });
  model.addAdapter("student", LORA, 9);
  try {
    await assert.rejects(distillObjective(model, { teacher: { model: other } }), /different vocabularies \(600 vs 512 logits\)/);
    await assert.rejects(distillObjective(model, { teacher: { model }, beta: 2 }), /beta must be in \[0, 1\]/);
    await assert.rejects(distillObjective(model, { teacher: { model }, temperature: 0 }), /temperature must be a number > 0/);
    await assert.rejects(distillObjective(model, { teacher: { model, adapter: "nope" } }), /nope/);
  } finally {
    model.deleteAdapter("student");
    other.close();
  }
});
