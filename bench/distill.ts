/**
 * Distillation speed (issue #15): the student's training tokens/s with the teacher's forward in
 * the step (distill()) beside plain SFT of the same student (train()), in the same run, and the
 * teacher's forward alone over the same batch. Target: distillation costs at most the teacher's
 * forward on top of SFT.
 *   student: stories260K + LoRA r 8 on q_proj, v_proj (AdamW, clip 1.0), tinyshakespeare windows;
 *   teachers: stories260K + a LoRA (the student's base with an adapter), and a random llama of
 *   ~15M parameters (dim 288, 6 layers, ffn 768) with stories260K's vocabulary.
 * ms/step is the median optimizer step after a warm-up step; the teacher's forward is the median
 * of timed forwards (hidden state and every chunk of its logits, read back to sync).
 *
 *   node scripts/prepare.mjs && deno run -A bench/distill.ts [--quick]
 */
import { Gpu } from "../src/gpu/gpu.ts";
import { loadModel, type Model } from "../src/api/model.ts";
import { teacherForward } from "../src/model/llama_train.ts";
import { distill } from "../src/train/distill.ts";
import { batches, loadDataset } from "../src/train/data.ts";
import { train, type TrainOptions } from "../src/train/trainer.ts";
import { median, randomLlamaGGUF, SHARED, STORIES260K } from "./lib/random_llama.ts";

const quick = Deno.args.includes("--quick");
const DATA = `${SHARED}data/tinyshakespeare.txt`;
const LORA = { r: 8, lora_alpha: 16, lora_dropout: 0, target_modules: ["q_proj", "v_proj"] };
const batch = quick ? 4 : 8, seq = quick ? 64 : 128, steps = quick ? 3 : 6;
const RUN: Omit<TrainOptions, "adapter"> = {
  data: DATA, seqLen: seq, batchSize: batch, maxSteps: steps, learningRate: 2e-4, maxGradNorm: 1, progress: false, maxExamples: batch * (steps + 1),
};

/** Median ms per optimizer step of a run, the first (warm-up: pipeline compiles) left out. */
async function stepMs(run: (onStep: () => void) => Promise<unknown>): Promise<number> {
  const stamps: number[] = [];
  const t0 = performance.now();
  await run(() => stamps.push(performance.now()));
  return median(stamps.map((s, i) => s - (i ? stamps[i - 1] : t0)).slice(1));
}

/** Median ms of the teacher's forward over one training batch. */
async function teacherMs(teacher: Model, adapter: string | undefined): Promise<number> {
  const ds = await loadDataset(DATA, teacher.tokenizer, { seqLen: seq, evalFraction: 0, seed: 42, maxExamples: batch });
  const b = batches(ds.train, batch, 42, 0)[0];
  const t = { llama: teacher.llama, hooks: teacher.peft.hooksFor(adapter) };
  const times: number[] = [];
  for (let i = 0; i < steps + 1; i++) {
    const t0 = performance.now();
    teacherForward(t, { B: b.rows, T: b.seqLen, inputs: b.input, targets: b.target });
    await teacher.gpu.sync();
    times.push(performance.now() - t0);
  }
  return median(times.slice(1));
}

const gpu = await Gpu.create();
console.log(`# Distillation vs SFT of the same student (stories260K + LoRA r 8 on q,v), batch ${batch} x ${seq}, ${steps} steps; ${gpu.info.description} (${gpu.info.runtime})`);
if (/llvmpipe|lavapipe|swiftshader|software/i.test(gpu.info.description)) {
  console.log(`# NOTE: the GPU here is a SOFTWARE rasteriser (${gpu.info.description}) on shared CPU cores: figures are not GPU figures, and noisy.`);
}
console.log();
const student = await loadModel(STORIES260K, { gpu });
const big = await loadModel(await randomLlamaGGUF({ dim: 288, nLayers: 6, nHeads: 6, nKvHeads: 6, hiddenDim: 768, vocab: 512, contextLength: 512 }), { gpu });
student.addAdapter("teacher", { ...LORA, target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"] }, 3);
const teachers: { name: string; model: Model; adapter?: string }[] = [
  { name: "stories260K + LoRA (the student's base)", model: student, adapter: "teacher" },
  { name: `random llama d288 L6 (${(big.baseParameters() / 1e6).toFixed(1)}M params)`, model: big },
];
const tok = (ms: number) => (batch * seq / (ms / 1000)).toFixed(0);
const rows: string[] = [];
for (const t of teachers) {
  // SFT and distillation of the same fresh student, back to back (same machine load).
  student.addAdapter("sft", LORA, 1);
  const sft = await stepMs((onStep) => train(student, { adapter: "sft", ...RUN, onStep }));
  student.deleteAdapter("sft");
  student.addAdapter("kd", LORA, 1);
  const kd = await stepMs((onStep) => distill(student, { adapter: "kd", ...RUN, onStep, teacher: { model: t.model, adapter: t.adapter }, beta: 0.5 }));
  student.deleteAdapter("kd");
  const fwd = await teacherMs(t.model, t.adapter);
  rows.push(
    `| ${t.name} | ${sft.toFixed(0)} | ${tok(sft)} | ${kd.toFixed(0)} | ${tok(kd)} | ${(kd - sft).toFixed(0)} | ${fwd.toFixed(0)} | ${((kd - sft) / fwd).toFixed(2)} |`,
  );
}
console.log("| teacher | SFT ms/step | SFT tok/s | distill ms/step | distill tok/s | distill - SFT ms | teacher forward ms | (distill - SFT) / teacher forward |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const r of rows) console.log(r);
big.close();
student.close();
gpu.destroy();
