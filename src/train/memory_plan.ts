/**
 * The training memory planner: before training starts, predicts the GPU bytes our allocator will
 * hold, per class (base weights, LoRA, gradients, optimizer, activations, pool slack), and refuses
 * with a suggestion when that is over the budget.
 *
 * How: the real training pass (lossAndGrads, evalLoss, grad-norm, optimizer step) is run against
 * a counting GPU that implements the allocator's bookkeeping (same pool size classes, same reuse
 * of released buffers) but records no GPU work. The prediction therefore follows the code as it
 * is, tape, recomputation under checkpointing and chunked heads included. Base weights and LoRA
 * tensors already on the GPU are counted as measured. The prediction is exact when the allocator's
 * pool is empty (train() trims it before planning); pooled buffers left by earlier work that the
 * run can reuse make it an over-estimate.
 */
import { PeftError } from "../errors.ts";
import { type DType, type Gpu, type MemoryCategory, Tensor } from "../gpu/gpu.ts";
import { sumOfSquares } from "../kernels/adamw.ts";
import { createOptimizer, MIN_PAGE_ELEMENTS, type OptimizerName, type OptimizerSlot, poolSize } from "./paged_adamw.ts";
import { CROSS_ENTROPY, type TrainingObjective } from "./objective.ts";
import type { Param } from "../model/graph.ts";
import type { ClassBytes } from "../model/memory_report.ts";
import type { TrainableModel } from "./trainer.ts";

const DTYPE_BYTES: Record<DType, number> = { f32: 4, u32: 4, i32: 4, f16: 2, u8: 1 };

/** Allocator bookkeeping without a device: what Gpu.tensor / release would hold. */
export class CountingGpu {
  private pool = new Map<number, number>();
  private sizes = new WeakMap<object, number>();
  private held = new Map<MemoryCategory, number>();
  private pooledBytes = 0;
  /** Bytes of buffers created (the pool never frees: this is the peak the allocator holds). */
  createdBytes = 0;
  readonly peakByCategory = new Map<MemoryCategory, number>();
  readonly stats = { dispatches: 0, submits: 0, readbacks: 0 };

  constructor(readonly info: Gpu["info"]) {}

  tensor(shape: number[], dtype: DType = "f32", category: MemoryCategory = "activations"): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    const raw = n * DTYPE_BYTES[dtype];
    const bytes = category === "weights" ? Math.max(16, Math.ceil(raw / 16) * 16) : poolSize(raw);
    const pooled = this.pool.get(bytes) ?? 0;
    if (pooled > 0) {
      this.pool.set(bytes, pooled - 1);
      this.pooledBytes -= bytes;
    } else {
      this.createdBytes += bytes;
    }
    const now = (this.held.get(category) ?? 0) + bytes;
    this.held.set(category, now);
    if (now > (this.peakByCategory.get(category) ?? 0)) this.peakByCategory.set(category, now);
    const buffer = {} as GPUBuffer;
    this.sizes.set(buffer, bytes);
    return new Tensor(this as unknown as Gpu, buffer, [...shape], dtype, category);
  }
  zeros(shape: number[], dtype: DType = "f32", category: MemoryCategory = "activations"): Tensor {
    return this.tensor(shape, dtype, category);
  }
  upload(data: ArrayBufferView, shape: number[], dtype?: DType, category: MemoryCategory = "weights"): Tensor {
    const dt: DType = dtype ??
      (data instanceof Float32Array ? "f32" : data instanceof Uint32Array ? "u32" : data instanceof Int32Array ? "i32" : data instanceof Uint16Array ? "f16" : "u8");
    return this.tensor(shape, dt, category);
  }
  release(t: Tensor): void {
    const bytes = this.sizes.get(t.buffer);
    if (bytes === undefined) return; // a tensor of the real GPU (weights, LoRA): not ours
    this.held.set(t.category, (this.held.get(t.category) ?? 0) - bytes);
    this.pool.set(bytes, (this.pool.get(bytes) ?? 0) + 1);
    this.pooledBytes += bytes;
  }
  write(): void {}
  copy(): void {}
  clear(): void {}
  dispatch(): void {}
  flush(): void {}
  async sync(): Promise<void> {}
  readF32(t: Tensor, count = t.size): Promise<Float32Array> {
    return Promise.resolve(new Float32Array(count));
  }
  read(t: Tensor, count = t.size): Promise<Float32Array> {
    return this.readF32(t, count);
  }
}

export interface TrainingPlanOptions {
  /** Adapter being trained (its LoRA tensors are already on the GPU). */
  adapter: string;
  batchSize: number;
  seqLen: number;
  gradientCheckpointing?: boolean;
  optimizer?: OptimizerName;
  /** Total GPU bytes our allocator may hold (weights included). */
  gpuMemoryBudget?: number;
  /** Forced page size for paged_adamw. */
  pageElements?: number;
  /** Whether evaluation passes run (eval data present). */
  evaluate?: boolean;
  /** What the passes compute (default cross-entropy; distillation adds the teacher's forward). */
  objective?: TrainingObjective;
}

export interface TrainingPlan {
  /** Predicted GPU bytes per class at the peak. */
  classes: ClassBytes & {
    /** Released buffers kept for reuse, other categories, and bytes held before training. */
    pool_and_other: number;
  };
  /** Predicted peak of the bytes our allocator holds. */
  total: number;
  /** Bytes held when planning (all counted in the total). */
  heldBefore: number;
  optimizer: { name: OptimizerName; paged: boolean; pageElements?: number; gpuBytes: number };
  budget?: number;
  fits: boolean;
}

/** One simulated run: grads, optimizer, eval pass, training step (with grad norm), eval again. */
function simulate(model: TrainableModel, o: TrainingPlanOptions, optimizerGpuBytes: number | undefined | "none") {
  const cg = new CountingGpu(model.gpu.info);
  const gpu = cg as unknown as Gpu;
  const llama = model.llama.withGpu(gpu);
  const a = model.adapter(o.adapter);
  // The adapter's own parameters (already on the GPU) with gradient buffers counted here when
  // training has not allocated them yet.
  const params = new Map<string, Param<Tensor>>();
  const slots: OptimizerSlot[] = [];
  for (const l of a.layout) {
    const p = a.params.get(l.key)!;
    const grad = p.grad ?? cg.zeros(l.shape, "f32", "gradients");
    params.set(l.key, { value: p.value, grad });
    slots.push({ key: l.key, param: p.value, grad });
  }
  const lora = a.method.hooks(a.config, a.model, { get: (k) => params.get(k)! }, 1);
  const opt = optimizerGpuBytes === "none" ? undefined : createOptimizer(gpu, o.optimizer ?? "adamw", slots, {
    gpuBytes: optimizerGpuBytes,
    pageElements: o.pageElements,
  });
  const rows = o.batchSize * o.seqLen;
  const batch = { B: o.batchSize, T: o.seqLen, inputs: new Array(rows).fill(0), targets: new Array(rows).fill(0) };
  const objective = (o.objective ?? CROSS_ENTROPY).onGpu(gpu);
  if (o.evaluate) objective.evalLoss(llama, lora, batch).release();
  objective.lossAndGrads(llama, lora, batch, { seed: 0, gradScale: 1, checkpointing: o.gradientCheckpointing }).release();
  sumOfSquares(gpu, slots.map((s) => s.grad)).release();
  // The optimizer step allocates nothing beyond its state and pages (paged: host round trips).
  if (o.evaluate) objective.evalLoss(llama, lora, batch).release();
  return { cg, opt };
}

/** Predicts the training run's GPU bytes per class; `fits` says whether it is within the budget. */
export function planTraining(model: TrainableModel, o: TrainingPlanOptions): TrainingPlan {
  const gpu = model.gpu;
  const heldBefore = gpu.bytesHeld();
  const p = model.parameterReport();
  const held = gpu.memoryByCategory();
  const budget = o.gpuMemoryBudget;
  const name = o.optimizer ?? "adamw";
  let optimizerBytes: number | undefined;
  if (name === "paged_adamw" && budget !== undefined && o.pageElements === undefined) {
    // What everything but the optimizer needs decides how much the optimizer may keep on the GPU.
    const base = simulate(model, o, "none");
    // At least the smallest pages: an over-budget plan then says so (with suggestions).
    optimizerBytes = Math.max(4 * poolSize(MIN_PAGE_ELEMENTS * 4), budget - heldBefore - base.cg.createdBytes);
  }
  const { cg, opt } = simulate(model, o, optimizerBytes);
  const peak = (c: MemoryCategory) => cg.peakByCategory.get(c) ?? 0;
  const total = heldBefore + cg.createdBytes;
  const classes = {
    base_4bit: p.quantizedBytes,
    base_ggml: p.ggmlBytes,
    base_f16: p.f16Bytes,
    base_f32: p.f32Bytes,
    lora: held.lora ?? 0,
    gradients: (held.gradients ?? 0) + peak("gradients"),
    optimizer: (held.optimizer ?? 0) + peak("optimizer"),
    activations: (held.activations ?? 0) + peak("activations"),
    pool_and_other: 0,
  };
  classes.pool_and_other = total - Object.values(classes).reduce((a, b) => a + b, 0);
  const optInfo = {
    name, paged: opt?.paged ?? false, pageElements: opt?.pageElements, gpuBytes: peak("optimizer"),
  };
  return { classes, total, heldBefore, optimizer: optInfo, budget, fits: budget === undefined || total <= budget };
}

const MiB = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;

/** A table of the plan, one class a line. */
export function formatPlan(plan: TrainingPlan): string {
  const lines = ["[memory plan] expected GPU bytes (our allocator) at the training peak:"];
  for (const [k, v] of Object.entries(plan.classes)) lines.push(`  ${k.padEnd(16)} ${String(v).padStart(12)}  ${MiB(v)}`);
  lines.push(`  ${"total".padEnd(16)} ${String(plan.total).padStart(12)}  ${MiB(plan.total)}` + (plan.budget !== undefined ? ` (budget ${MiB(plan.budget)})` : ""));
  const o = plan.optimizer;
  lines.push(`  optimizer: ${o.name}${o.paged ? `, state paged to host memory in pages of ${o.pageElements} values` : ", state resident on the GPU"}`);
  return lines.join("\n");
}

/**
 * Plans and refuses (GPU_BUDGET_EXCEEDED) with the figures and what would fit: a smaller batch,
 * gradient checkpointing, a paged optimizer.
 */
export function checkTrainingPlan(model: TrainableModel, o: TrainingPlanOptions): TrainingPlan {
  const plan = planTraining(model, o);
  if (plan.fits) return plan;
  const tries: [string, TrainingPlanOptions][] = [];
  if (!o.gradientCheckpointing) tries.push(["gradientCheckpointing: true (--gradient-checkpointing)", { ...o, gradientCheckpointing: true }]);
  if ((o.optimizer ?? "adamw") === "adamw") {
    tries.push(["optimizer: \"paged_adamw\" (--optimizer paged_adamw)", { ...o, optimizer: "paged_adamw" }]);
    tries.push(["optimizer: \"adamw_8bit\" (--optimizer adamw_8bit)", { ...o, optimizer: "adamw_8bit" }]);
  }
  for (let b = Math.floor(o.batchSize / 2); b >= 1; b = Math.floor(b / 2)) {
    tries.push([`batchSize: ${b} with gradientAccumulationSteps x${Math.ceil(o.batchSize / b)} (--batch-size ${b} --grad-accum ${Math.ceil(o.batchSize / b)})`, { ...o, batchSize: b }]);
    if (b === 1) break;
  }
  const fits: string[] = [];
  for (const [label, t] of tries) {
    try {
      const alt = planTraining(model, t);
      if (alt.fits) fits.push(`${label}: ${MiB(alt.total)}`);
    } catch { /* an alternative that cannot even be planned (paging below the minimum page) */ }
  }
  const both = { ...o, gradientCheckpointing: true, optimizer: "paged_adamw" as const, batchSize: 1 };
  if (!fits.length) {
    try {
      const alt = planTraining(model, both);
      if (alt.fits) fits.push(`batch 1 with checkpointing and paged_adamw: ${MiB(alt.total)}`);
    } catch { /* nothing fits */ }
  }
  throw new PeftError(
    "GPU_BUDGET_EXCEEDED",
    `training needs about ${MiB(plan.total)} of GPU memory, over the budget of ${MiB(plan.budget!)}\n${formatPlan(plan)}\n` +
      (fits.length
        ? `these would fit: ${fits.join("; ")}`
        : `nothing fits: base weights alone take ${MiB(plan.classes.base_4bit + plan.classes.base_ggml + plan.classes.base_f16 + plan.classes.base_f32)}; try quantize: "nf4" with doubleQuant, a shorter seqLen, or a smaller r`),
  );
}
