/**
 * Learning-rate schedules, the same numbers as Hugging Face transformers' get_scheduler:
 * get_constant_schedule, get_constant_schedule_with_warmup, get_linear_schedule_with_warmup and
 * get_cosine_schedule_with_warmup (num_cycles 0.5). Like there, `step` counts optimizer steps
 * already taken (0-based): the first update uses lrAt(0), which is 0 whenever there is warmup.
 */
import { PeftError } from "../errors.ts";

export type LrSchedulerName = "constant" | "constant_with_warmup" | "linear" | "cosine";
export const LR_SCHEDULERS: readonly LrSchedulerName[] = ["constant", "constant_with_warmup", "linear", "cosine"];

export interface ScheduleOptions {
  learningRate: number;
  lrScheduler: LrSchedulerName;
  /** Total optimizer steps of the run. */
  totalSteps: number;
  /** Warmup in steps; wins over warmupRatio when > 0 (as in TrainingArguments). */
  warmupSteps?: number;
  /** Warmup as a fraction of totalSteps: ceil(ratio * totalSteps) steps. */
  warmupRatio?: number;
}

/** transformers TrainingArguments.get_warmup_steps: steps if > 0, else ceil(total * ratio). */
export function warmupStepsFor(o: ScheduleOptions): number {
  const steps = o.warmupSteps ?? 0;
  return steps > 0 ? steps : Math.ceil(o.totalSteps * (o.warmupRatio ?? 0));
}

/** Throws a PeftError naming the bad option. */
export function validateSchedule(o: ScheduleOptions): void {
  if (!(typeof o.learningRate === "number" && Number.isFinite(o.learningRate) && o.learningRate >= 0)) {
    throw new PeftError("BAD_TRAIN_OPTION", `learningRate must be a finite number >= 0, got ${o.learningRate}`);
  }
  if (!LR_SCHEDULERS.includes(o.lrScheduler)) {
    throw new PeftError("BAD_TRAIN_OPTION", `lrScheduler '${o.lrScheduler}' is not one of ${LR_SCHEDULERS.join(", ")}`);
  }
  if (!Number.isInteger(o.totalSteps) || o.totalSteps < 1) {
    throw new PeftError("BAD_TRAIN_OPTION", `totalSteps must be an integer >= 1, got ${o.totalSteps}`);
  }
  if (o.warmupSteps !== undefined && !(Number.isInteger(o.warmupSteps) && o.warmupSteps >= 0)) {
    throw new PeftError("BAD_TRAIN_OPTION", `warmupSteps must be an integer >= 0, got ${o.warmupSteps}`);
  }
  if (o.warmupRatio !== undefined && !(typeof o.warmupRatio === "number" && o.warmupRatio >= 0 && o.warmupRatio <= 1)) {
    throw new PeftError("BAD_TRAIN_OPTION", `warmupRatio must be in [0, 1], got ${o.warmupRatio}`);
  }
}

/** Multiplier in [0, 1] applied to learningRate after `step` optimizer steps. */
export function lrLambda(step: number, o: ScheduleOptions): number {
  if (o.lrScheduler === "constant") return 1; // get_constant_schedule ignores warmup, as transformers does
  const warmup = warmupStepsFor(o);
  if (step < warmup) return step / Math.max(1, warmup);
  if (o.lrScheduler === "constant_with_warmup") return 1;
  const progress = (step - warmup) / Math.max(1, o.totalSteps - warmup);
  if (o.lrScheduler === "linear") return Math.max(0, (o.totalSteps - step) / Math.max(1, o.totalSteps - warmup));
  // cosine with num_cycles = 0.5: half a cosine from 1 down to 0
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 0.5 * 2 * progress)));
}

/** Learning rate for the update that follows `step` completed optimizer steps. */
export function lrAt(step: number, o: ScheduleOptions): number {
  return o.learningRate * lrLambda(step, o);
}

/**
 * Optimizer steps of a run: each epoch has ceil(microBatches / gradientAccumulationSteps) updates
 * (the last update of an epoch may accumulate fewer micro-batches), at least one per epoch.
 */
export function totalOptimizerSteps(o: { microBatchesPerEpoch: number; gradientAccumulationSteps: number; epochs: number }): number {
  if (!Number.isInteger(o.gradientAccumulationSteps) || o.gradientAccumulationSteps < 1) {
    throw new PeftError("BAD_TRAIN_OPTION", `gradientAccumulationSteps must be an integer >= 1, got ${o.gradientAccumulationSteps}`);
  }
  if (!(o.epochs > 0)) throw new PeftError("BAD_TRAIN_OPTION", `epochs must be > 0, got ${o.epochs}`);
  const perEpoch = Math.max(1, Math.ceil(o.microBatchesPerEpoch / o.gradientAccumulationSteps));
  return Math.max(1, Math.ceil(perEpoch * o.epochs));
}
