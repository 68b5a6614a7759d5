/**
 * Knowledge distillation: the student (any adapter on the student model) learns the teacher's
 * next-token distributions on the training data, with TRL's generalized JSD (GKDTrainer's loss:
 * beta 0 forward KL, 1 reverse KL, the temperature dividing both logits), masked like SFT (only
 * positions whose target carries loss), optionally mixed with the cross-entropy on the targets:
 * loss = (1 - ceWeight)·JSD + ceWeight·CE. Everything else is train(): epochs, schedules,
 * checkpoints, evaluation (of the same loss), resume.
 *
 * The teacher is another model of the same vocabulary (a larger one, or the same family), or the
 * student's own base with a teacher adapter; its forward runs on the GPU in the same step (frozen,
 * no tape, one chunk of its logits at a time). A teacher that does not fit beside the student runs
 * once beforehand (`saveTeacherLogits`) and its top-k log-probabilities come from that file.
 */
import { PeftError } from "../errors.ts";
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import { checkTeacher, type DistillLossOptions, distillEvalLoss, distillLossAndGrads, type Teacher } from "../model/llama_train.ts";
import type { LlamaGpu } from "../model/llama.ts";
import type { Hooks } from "../model/sites.ts";
import type { PeftModel } from "../peft/peft_model.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { loadDataset } from "./data.ts";
import type { TrainingObjective } from "./objective.ts";
import { TeacherTopK, writeTeacherTopK } from "./teacher_topk.ts";
import { train, type TrainableModel, type TrainOptions, type TrainResult } from "./trainer.ts";

/** What a teacher needs of a model (the api's Model satisfies it). */
export interface TeacherModel {
  readonly llama: LlamaGpu;
  readonly peft: PeftModel;
  readonly tokenizer: Tokenizer;
  readonly source: string;
}

/** A teacher model, optionally with one of its adapters (e.g. the student's base with a trained adapter). */
export interface TeacherSpec {
  model: TeacherModel;
  adapter?: string;
}

export interface DistillOptions extends Omit<TrainOptions, "objective"> {
  /** The teacher: a model (and adapter), or a file of its top-k log-probabilities (saveTeacherLogits). */
  teacher: TeacherSpec | { logitsFile: string };
  /** TRL's beta: 0 forward KL(teacher ‖ student), 1 reverse KL, 0.5 the symmetric JSD (default, as GKDConfig). */
  beta?: number;
  /** Divides both models' logits before the softmax (default 1). */
  temperature?: number;
  /** Weight of the cross-entropy on the data's targets: loss = (1 - w)·JSD + w·CE (default 0). */
  ceWeight?: number;
}

export function resolveDistillLoss(o: { beta?: number; temperature?: number; ceWeight?: number }): DistillLossOptions {
  const d = { beta: o.beta ?? 0.5, temperature: o.temperature ?? 1, ceWeight: o.ceWeight ?? 0 };
  const bad = (m: string) => new PeftError("BAD_DISTILL_OPTION", m);
  if (!(d.beta >= 0 && d.beta <= 1)) throw bad(`beta must be in [0, 1] (0 forward KL, 1 reverse KL), got ${d.beta}`);
  if (!(Number.isFinite(d.temperature) && d.temperature > 0)) throw bad(`temperature must be a number > 0, got ${d.temperature}`);
  if (!(d.ceWeight >= 0 && d.ceWeight <= 1)) throw bad(`ceWeight must be in [0, 1], got ${d.ceWeight}`);
  return d;
}

/** "forward KL" / "reverse KL" / "generalized JSD (beta 0.3)", with the temperature and CE weight when they are not the defaults. */
export function describeDistillLoss(d: DistillLossOptions): string {
  const kind = d.beta === 0 ? "forward KL" : d.beta === 1 ? "reverse KL" : `generalized JSD (beta ${d.beta})`;
  return `distillation: ${kind}${d.temperature !== 1 ? `, temperature ${d.temperature}` : ""}${d.ceWeight ? `, ${1 - d.ceWeight}·JSD + ${d.ceWeight}·cross-entropy` : ""}`;
}

/** Refuses a teacher whose tokenizer differs from the student's: their distributions are over the same token ids. */
export function checkSameVocabulary(student: { tokenizer: Tokenizer; source: string; llama: LlamaGpu }, teacher: TeacherModel): void {
  const s = student.tokenizer, t = teacher.tokenizer;
  const differ = (what: string) =>
    new PeftError("TEACHER_VOCAB_MISMATCH", `teacher ${teacher.source} and student ${student.source} have different vocabularies (${what}): distillation needs the same tokenizer`);
  if (student.llama.config.vocabSize !== teacher.llama.config.vocabSize) {
    throw differ(`${teacher.llama.config.vocabSize} vs ${student.llama.config.vocabSize} logits`);
  }
  if (s.vocabSize !== t.vocabSize) throw differ(`${t.vocabSize} vs ${s.vocabSize} tokens`);
  for (let i = 0; i < s.vocabSize; i++) {
    if (s.idToToken(i) !== t.idToToken(i)) throw differ(`token ${i} is ${JSON.stringify(t.idToToken(i))} vs ${JSON.stringify(s.idToToken(i))}`);
  }
}

function teacherOf(spec: TeacherSpec): { llama: LlamaGpu; hooks: Hooks<Tensor> } {
  return { llama: spec.model.llama, hooks: spec.model.peft.hooksFor(spec.adapter) };
}

/** The distillation objective against a teacher model run in the same step. */
function modelObjective(teacher: { llama: LlamaGpu; hooks: Hooks<Tensor> }, d: DistillLossOptions): TrainingObjective {
  return {
    label: describeDistillLoss(d),
    lossAndGrads: (llama, hooks, batch, o) => distillLossAndGrads(llama, hooks, batch, teacher, d, o),
    evalLoss: (llama, hooks, batch) => distillEvalLoss(llama, hooks, batch, teacher, d),
    onGpu: (gpu: Gpu) => modelObjective({ llama: teacher.llama.withGpu(gpu), hooks: teacher.hooks }, d),
  };
}

/** The distillation objective against a precomputed top-k file. */
function fileObjective(file: TeacherTopK, d: DistillLossOptions): TrainingObjective {
  const teacher = (batch: Parameters<TrainingObjective["evalLoss"]>[2]): Teacher => ({ logProbs: (r0, n) => file.rows(batch, r0, n) });
  const self: TrainingObjective = {
    label: `${describeDistillLoss(d)} (teacher top-${file.topK} from ${file.path})`,
    lossAndGrads: (llama, hooks, batch, o) => distillLossAndGrads(llama, hooks, batch, teacher(batch), d, o),
    evalLoss: (llama, hooks, batch) => distillEvalLoss(llama, hooks, batch, teacher(batch), d),
    // The memory planner's batch has no sequences: any values of the right shape do (it counts bytes).
    onGpu: () => ({ ...self, ...uniformTeacher(file.vocabSize, d) }),
  };
  return self;
}

/** File-teacher passes on the planner's counting GPU: uniform log-probabilities stand in for the file's rows. */
function uniformTeacher(V: number, d: DistillLossOptions): Pick<TrainingObjective, "lossAndGrads" | "evalLoss"> {
  const teacher: Teacher = { logProbs: (_r0, n) => new Float32Array(n * V).fill(-Math.log(V)) };
  return {
    lossAndGrads: (llama, hooks, batch, o) => distillLossAndGrads(llama, hooks, batch, teacher, d, o),
    evalLoss: (llama, hooks, batch) => distillEvalLoss(llama, hooks, batch, teacher, d),
  };
}

/** The objective for a teacher spec or file, checked against the student. */
export async function distillObjective(student: TrainableModel, o: Pick<DistillOptions, "teacher" | "beta" | "temperature" | "ceWeight">): Promise<TrainingObjective> {
  const d = resolveDistillLoss(o);
  if ("logitsFile" in o.teacher) {
    const file = await TeacherTopK.load(o.teacher.logitsFile);
    if (file.vocabSize !== student.llama.config.vocabSize) {
      throw new PeftError("TEACHER_VOCAB_MISMATCH", `${file.path} holds a vocabulary of ${file.vocabSize} tokens and the student's has ${student.llama.config.vocabSize}`);
    }
    if (file.temperature !== d.temperature) {
      throw new PeftError("BAD_DISTILL_OPTION", `${file.path} holds log-probabilities at temperature ${file.temperature}; distill with temperature ${file.temperature}, or make the file again at ${d.temperature}`);
    }
    return fileObjective(file, d);
  }
  checkSameVocabulary(student, o.teacher.model);
  if (o.teacher.adapter !== undefined) o.teacher.model.peft.adapter(o.teacher.adapter); // names it, or fails with the list
  const teacher = teacherOf(o.teacher);
  checkTeacher(student.llama, teacher);
  return modelObjective(teacher, d);
}

/** Distills the teacher into the student's adapter `options.adapter` (model.addAdapter first). */
export async function distill(student: TrainableModel, options: DistillOptions): Promise<TrainResult> {
  const { teacher, beta, temperature, ceWeight, ...rest } = options;
  const objective = await distillObjective(student, { teacher, beta, temperature, ceWeight });
  return await train(student, { ...rest, objective });
}

export interface SaveTeacherLogitsOptions extends Pick<TrainOptions, "data" | "seqLen" | "stride" | "evalFraction" | "seed" | "packing" | "format" | "maxExamples" | "chatTemplate"> {
  teacher: TeacherSpec;
  /** Tokens kept per position (default 64). */
  topK?: number;
  /** The distillation temperature (default 1): the file is for runs at this temperature. */
  temperature?: number;
  /** Sequences per teacher forward (default 8). */
  batchSize?: number;
}

/**
 * Runs the teacher once over every sequence a distillation run with the same data options will
 * see and writes their top-k log-probabilities to `path` (see teacher_topk.ts). Defaults match
 * train()'s (seqLen 256, evalFraction 0, seed 42).
 */
export async function saveTeacherLogits(path: string, o: SaveTeacherLogitsOptions): Promise<{ sequences: number; bytes: number }> {
  const model = o.teacher.model;
  const ds = await loadDataset(o.data, model.tokenizer, {
    seqLen: o.seqLen ?? 256, stride: o.stride, evalFraction: o.evalFraction ?? 0, seed: o.seed ?? 42, packing: o.packing, format: o.format,
    maxExamples: o.maxExamples, chatTemplate: o.chatTemplate,
  });
  const examples = [...ds.train, ...ds.eval];
  const bytes = await writeTeacherTopK(teacherOf(o.teacher), examples, path, {
    topK: o.topK ?? 64, temperature: o.temperature ?? 1, batchSize: o.batchSize ?? 8, teacher: model.source + (o.teacher.adapter ? ` + ${o.teacher.adapter}` : ""),
  });
  return { sequences: examples.length, bytes };
}
