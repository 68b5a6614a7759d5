/**
 * What a training run minimizes. The trainer (and the memory planner) call an objective for each
 * micro-batch and never name the loss: supervised fine-tuning is cross-entropy on the targets;
 * distillation (distill.ts) is the divergence from a teacher's distribution on the same rows.
 */
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import type { LlamaGpu } from "../model/llama.ts";
import { evalLoss, lossAndGrads, type PassOptions, type TrainBatch } from "../model/llama_train.ts";
import type { Hooks } from "../model/sites.ts";

export interface TrainingObjective {
  /** What the loss is, for progress lines and the loss curve's title ("cross-entropy", "distillation (forward KL)"). */
  readonly label: string;
  /** Forward + backward of a micro-batch: per-row losses [B*T] (summed over loss tokens by the caller); gradients accumulate. */
  lossAndGrads(llama: LlamaGpu, hooks: Hooks<Tensor>, batch: TrainBatch, o: PassOptions): Tensor;
  /** The same loss, forward only, for evaluation: per-row losses [B*T]. */
  evalLoss(llama: LlamaGpu, hooks: Hooks<Tensor>, batch: TrainBatch): Tensor;
  /** The objective on another device (the memory planner's counting GPU): anything it holds on a GPU, rebound. */
  onGpu(gpu: Gpu): TrainingObjective;
}

/** Supervised fine-tuning: mean cross-entropy of the next token where the target is not masked. */
export const CROSS_ENTROPY: TrainingObjective = {
  label: "cross-entropy",
  lossAndGrads,
  evalLoss,
  onGpu: () => CROSS_ENTROPY,
};
