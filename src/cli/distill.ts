/**
 * `distill --teacher <model> [--teacher-adapter dir] --model <student> --data <file> --out <dir>`:
 * knowledge distillation into a student adapter (any --peft-type) with TRL's generalized JSD
 * (--beta 0 forward KL, 1 reverse KL; --temperature; --ce-weight mixes in the cross-entropy), the
 * teacher's forward on the GPU in the same step. `--save-teacher-logits file` runs the teacher once
 * and stores its top-k log-probabilities; `--teacher-logits file` then distills from that file
 * (for teachers that do not fit beside the student). Every train flag works here, and so does
 * `--config recipe.yaml` (stage: kd).
 */
import { loadModel, type Model } from "../api/model.ts";
import { distill, saveTeacherLogits, type TeacherSpec } from "../train/distill.ts";
import { resolveChatTemplate } from "./chat_template_flag.ts";
import { type Command, type Flag, usageError } from "./flags.ts";
import { loadModelFromFlags, MODEL_FLAGS } from "./model_flags.ts";
import { parseWithRecipe } from "./recipe.ts";
import {
  addRunAdapter, adapterName, checkRunFlags, evalLine, fitSeqLen, printSample, quantizedBaseLines, type RunValues, TRAIN, trainOptionsFrom, writeRunConfig,
} from "./train.ts";

const teacher = "teacher", kd = "distillation loss";

export const DISTILL = {
  name: "distill",
  summary: "distill a teacher model into a student adapter (TRL's generalized JSD: forward KL, reverse KL, JSD), or store a teacher's top-k logits",
  usage: "--teacher <path.gguf|hf-dir> [--teacher-adapter <dir>] --model <student> --data <file> --out <dir> [flags]   or   " +
    "--teacher <path> --data <file> --save-teacher-logits <file.safetensors>",
  flags: {
    ...TRAIN.flags,
    model: { ...MODEL_FLAGS.model, required: false, description: "the student model (GGUF file or Hugging Face directory); its adapter is what trains" } as Flag & { type: "string" },
    out: { ...TRAIN.flags.out, required: false } as Flag & { type: "string" },
    teacher: {
      type: "string", value: "<path.gguf|hf-dir>", defaultText: "--model", group: teacher,
      description: "the teacher model, frozen (same vocabulary as the student); without it the teacher is the student's base with --teacher-adapter",
    },
    "teacher-adapter": { type: "string", value: "<peft-dir>", group: teacher, description: "an adapter on the teacher (e.g. one trained with train)" },
    "teacher-quantize": { type: "string", choices: ["nf4", "fp4"], defaultText: "none", group: teacher, description: "keep the teacher's block linears in 4 bits (it is only run forward)" },
    "teacher-logits": { type: "string", value: "<file.safetensors>", group: teacher, description: "distill from a file of the teacher's top-k log-probabilities (--save-teacher-logits) instead of running it" },
    "save-teacher-logits": {
      type: "string", value: "<file.safetensors>", group: teacher,
      description: "run the teacher over the data (with the data flags a distill run will use) and store its top-k log-probabilities; no training",
    },
    "top-k": { type: "int", default: 64, min: 1, units: "tokens", group: teacher, description: "with --save-teacher-logits: tokens kept per position (the rest of the mass is spread evenly)" },
    beta: { type: "number", default: 0.5, min: 0, max: 1, group: kd, description: "TRL's generalized JSD: 0 = forward KL(teacher ‖ student), 1 = reverse KL, 0.5 = JSD" },
    temperature: { type: "number", default: 1, min: 0, group: kd, description: "divides both models' logits before the softmax (> 0)" },
    "ce-weight": { type: "number", default: 0, min: 0, max: 1, group: kd, aliases: ["alpha"], description: "mix in the cross-entropy on the data: loss = (1 - w)·JSD + w·CE" },
  },
  notes: [
    "examples:",
    "  npx deno task distill --model ../shared/models/stories260K/stories260K.gguf --teacher-adapter runs/shakespeare/adapter \\",
    "      --data ../shared/data/tinyshakespeare.txt --out runs/kd --beta 0 --seq-len 128 --lr 5e-3 --max-steps 50",
    "  npx deno task distill --teacher big.gguf --data d.jsonl --save-teacher-logits runs/teacher.safetensors --top-k 64",
  ],
} as const satisfies Command;

/** The teacher model: --teacher loaded beside the student (or the student itself), with --teacher-adapter. */
async function loadTeacher(v: RunValues & { teacher?: string; "teacher-adapter"?: string; "teacher-quantize"?: string }, student?: Model): Promise<TeacherSpec> {
  const model = student && (v.teacher === undefined || v.teacher === v.model)
    ? student
    : await loadModel(v.teacher!, { gpu: student?.gpu, computeDtype: v["compute-dtype"] as "f32", ...(v["teacher-quantize"] ? { quantize: v["teacher-quantize"] as "nf4" } : {}) });
  // ".teacher" cannot clash with the student's adapter (adapterName never starts with ".").
  if (v["teacher-adapter"]) await model.loadAdapter(".teacher", v["teacher-adapter"]);
  return { model, adapter: v["teacher-adapter"] ? ".teacher" : undefined };
}

export async function main(args: string[]): Promise<void> {
  const f = await parseWithRecipe(DISTILL, args, "kd");
  if (!f) return;
  const v = f.values;
  const template = await resolveChatTemplate(v["chat-template"]);
  if (!(v.temperature > 0)) throw usageError(`--temperature must be > 0, got ${v.temperature}`);
  if (v["save-teacher-logits"] !== undefined) {
    if (v.teacher === undefined) throw usageError("--save-teacher-logits needs --teacher (the model to run)");
    const spec = await loadTeacher(v as RunValues);
    try {
      const seqLen = Math.min(v["seq-len"], spec.model.llama.config.contextLength);
      const r = await saveTeacherLogits(v["save-teacher-logits"], {
        teacher: spec, data: v.data, seqLen, stride: v.stride, evalFraction: v["eval-fraction"], seed: v.seed, packing: v.packing, maxExamples: v["max-examples"],
        chatTemplate: template, topK: v["top-k"], temperature: v.temperature, batchSize: v["batch-size"],
      });
      console.log(`[distill] teacher top-${v["top-k"]} log-probabilities (temperature ${v.temperature}) of ${r.sequences} sequences of ${seqLen} tokens -> ` +
        `${v["save-teacher-logits"]} (${(r.bytes / 2 ** 20).toFixed(1)} MiB); use: distill --teacher-logits ${v["save-teacher-logits"]} with the same data flags`);
    } finally {
      (spec.model as Model).close();
    }
    return;
  }
  for (const flag of ["model", "out"] as const) if (v[flag] === undefined) throw usageError(`--${flag} is required (see distill --help)`);
  const rv = v as unknown as RunValues;
  checkRunFlags(rv, f.given);
  const fromFile = v["teacher-logits"] !== undefined;
  if (fromFile && (v.teacher !== undefined || v["teacher-adapter"] !== undefined)) throw usageError("give --teacher-logits or --teacher/--teacher-adapter, not both");
  if (!fromFile && v.teacher === undefined && v["teacher-adapter"] === undefined) {
    throw usageError("distill needs a teacher: --teacher <model>, --teacher-adapter <dir> (on the student's base), or --teacher-logits <file>");
  }
  const student = await loadModelFromFlags(rv);
  let spec: TeacherSpec | undefined;
  try {
    for (const line of quantizedBaseLines(student)) console.log(line);
    spec = fromFile ? undefined : await loadTeacher(v as RunValues, student);
    if (spec && spec.model !== student) console.log(`[distill] teacher ${v.teacher}${v["teacher-adapter"] ? ` + ${v["teacher-adapter"]}` : ""}: ${spec.model.llama.config.nLayers} layers, dim ${spec.model.llama.config.dim}`);
    fitSeqLen(rv, student, ...(spec ? [spec.model as Model] : []));
    const name = adapterName(rv.out);
    await addRunAdapter(student, rv, name);
    await writeRunConfig(DISTILL, rv, f.source);
    const res = await distill(student, {
      ...trainOptionsFrom(rv, name, template), teacher: spec ?? { logitsFile: v["teacher-logits"]! }, beta: v.beta, temperature: v.temperature, ceWeight: v["ce-weight"],
    });
    if (res.initialEvalLoss !== undefined && res.finalEvalLoss !== undefined) console.log(evalLine("distill", "distillation loss", res.initialEvalLoss, res.finalEvalLoss));
    if (!res.stoppedEarly) console.log(`[distill] student adapter saved to ${rv.out}/adapter (compare: eval --model ${rv.model} --adapter ${rv.out}/adapter --data <held-out file>)`);
    if (v.sample !== undefined && !res.stoppedEarly) await printSample(student, name, v.sample);
  } finally {
    if (spec && spec.model !== student) (spec.model as Model).close();
    student.close();
  }
}
