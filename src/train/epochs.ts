/**
 * Optimizer steps over epochs, counted as transformers' Trainer counts them: an epoch is
 * ceil(micro-batches / gradient_accumulation_steps) steps (its last step takes the micro-batches
 * left over), num_train_epochs may be fractional (max_steps = ceil(epochs × steps per epoch)),
 * and max_steps, when given, wins and runs as many epochs as it needs.
 */
import { PeftError } from "../errors.ts";

export class EpochPlan {
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;

  constructor(readonly microPerEpoch: number, readonly accumulation: number, o: { epochs: number; maxSteps?: number }) {
    if (!(Number.isFinite(o.epochs) && o.epochs > 0)) throw new PeftError("BAD_TRAIN_OPTION", `epochs must be a number > 0, got ${o.epochs}`);
    this.stepsPerEpoch = Math.max(1, Math.ceil(microPerEpoch / accumulation));
    this.totalSteps = o.maxSteps ?? Math.max(1, Math.ceil(o.epochs * this.stepsPerEpoch));
  }

  /** The epoch of optimizer step `step` (0-based) and the indices of its micro-batches within that epoch. */
  microBatches(step: number): { epoch: number; indices: number[] } {
    const epoch = Math.floor(step / this.stepsPerEpoch);
    const first = (step % this.stepsPerEpoch) * this.accumulation;
    const n = Math.min(this.accumulation, this.microPerEpoch - first);
    return { epoch, indices: Array.from({ length: n }, (_, k) => first + k) };
  }

  /** True when step (0-based) is the last of an epoch. */
  endsEpoch(step: number): boolean {
    return (step + 1) % this.stepsPerEpoch === 0;
  }

  /** Epochs done after `steps` steps (fractional, as transformers logs `epoch`). */
  epochAt(steps: number): number {
    return steps / this.stepsPerEpoch;
  }
}
