/**
 * The training loop, for any PEFT method (the adapter's hooks and parameters are all it sees) and
 * any objective (cross-entropy, or distillation from a teacher): data -> micro-batches ->
 * forward/backward on the GPU -> global-norm clipping -> AdamW on the GPU, with an LR schedule,
 * epochs as transformers counts them, evaluation and checkpoints by steps or epochs,
 * save_total_limit, load_best_model_at_end, early stopping, metrics.jsonl + loss.svg, a
 * checkpoint on Ctrl-C and exact resume.
 *
 * Reproducibility: batch order depends on (seed, epoch) and every dropout mask on
 * (seed, step, micro-batch, layer, module), so a resumed run needs only the step, the adapter
 * and the optimizer state to continue with the same losses as an uninterrupted one.
 */
import { join, onInterrupt, readFile } from "../util/host.ts";
import { PeftError } from "../errors.ts";
import { sumOfSquares } from "../kernels/adamw.ts";
import { LossScaler, type LossScaleState, type LossScalerOptions } from "./loss_scale.ts";
import { checkTrainingPlan, formatPlan, type TrainingPlan } from "./memory_plan.ts";
import { createOptimizer, type OptimizerName, OPTIMIZERS } from "./paged_adamw.ts";
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import type { LlamaGpu } from "../model/llama.ts";
import { describeBaseStorage, type ParameterReport } from "../model/memory_report.ts";
import type { TrainBatch } from "../model/llama_train.ts";
import type { Hooks } from "../model/sites.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import type { Adapter } from "../peft/adapter.ts";
import type { PeftModel } from "../peft/peft_model.ts";
import { BestModelTracker, type BestModelState } from "./best_model.ts";
import { latestCheckpoint, restoreAdapter, restoreCheckpoint, rotateCheckpoints, writeCheckpoint } from "./checkpoints.ts";
import { type Batch, batches, batchesPerEpoch, dataName, evalBatches, type Example, loadDataset, type TrainingText } from "./data.ts";
import { EpochPlan } from "./epochs.ts";
import { lossOver } from "./evaluate.ts";
import { CROSS_ENTROPY, type TrainingObjective } from "./objective.ts";
import { lossCurveSvg } from "./loss_svg.ts";
import { prepareOutputDir, writeRunFile } from "./output_dir.ts";
import { formatEval, meanEvalSeconds, type MetricRecord, MetricsWriter, parseMetrics, ProgressReporter } from "./progress.ts";
import { deriveSeed } from "../util/rng.ts";
import { lrAt, type LrSchedulerName, validateSchedule } from "./schedule.ts";

/** What training needs of a model (the api's Model satisfies it). */
export interface TrainableModel {
  readonly gpu: Gpu;
  readonly llama: LlamaGpu;
  readonly peft: PeftModel;
  readonly tokenizer: Tokenizer;
  readonly source: string;
  readonly computeDtype: "f32" | "f16";
  readonly isQuantized: boolean;
  adapter(name: string): Adapter;
  saveAdapter(name: string, dir: string): Promise<void>;
  exclusive<T>(fn: () => Promise<T> | T): Promise<T>;
  parameterReport(): ParameterReport;
}

export interface TrainOptions {
  /** Name of the adapter to train (model.addAdapter first). */
  adapter: string;
  /**
   * Plain text or JSONL ({"text"}, {"prompt","completion"}, {"messages"}): a file path, or
   * `{ text, name? }` (a web page's pasted or dropped text; a name ending in .jsonl means JSONL).
   */
  data: string | TrainingText;
  seqLen?: number;
  batchSize?: number;
  gradientAccumulationSteps?: number;
  learningRate?: number;
  lrScheduler?: LrSchedulerName;
  warmupRatio?: number;
  warmupSteps?: number;
  weightDecay?: number;
  adamBeta1?: number;
  adamBeta2?: number;
  adamEpsilon?: number;
  /** Global-norm clipping; 0 disables. */
  maxGradNorm?: number;
  /** Passes over the training data, fractional too (transformers' num_train_epochs); default 1. */
  epochs?: number;
  /** Stop after this many optimizer steps (overrides epochs). */
  maxSteps?: number;
  /** transformers' group_by_length: batches of similar lengths, each cut to its longest row (less padding). */
  groupByLength?: boolean;
  seed?: number;
  evalFraction?: number;
  /** Evaluate every N optimizer steps (and at the start and end); 0 = only start and end. */
  evalSteps?: number;
  /** When to evaluate between the start and the end: every evalSteps ("steps", default), at each epoch's end ("epoch"), or not ("no"). */
  evalStrategy?: Strategy;
  /** Cap on eval batches per evaluation (default all): the first N batches of the held-out split. */
  maxEvalBatches?: number;
  /** Checkpoint every N optimizer steps; 0 = only at the end and on Ctrl-C. */
  saveSteps?: number;
  /** When to checkpoint before the end: every saveSteps ("steps", default), at each epoch's end ("epoch"), or not ("no"). */
  saveStrategy?: Strategy;
  /** Keep at most this many checkpoints (the newest, plus the best with loadBestModelAtEnd); older ones are deleted. */
  saveTotalLimit?: number;
  /**
   * At the end, load the adapter of the checkpoint with the best metricForBestModel (saved as the
   * final adapter). Needs evaluation data, and evaluations where checkpoints are saved (the same
   * strategy; saveSteps a multiple of evalSteps), as transformers requires.
   */
  loadBestModelAtEnd?: boolean;
  /** Only "eval_loss" (lower is better; transformers' "loss" means the same). */
  metricForBestModel?: "eval_loss" | "loss";
  /** Stop after this many evaluations in a row without improving on the best (transformers' EarlyStoppingCallback); needs loadBestModelAtEnd. */
  earlyStoppingPatience?: number;
  /** How much an evaluation must beat the best by to reset the patience (default 0). */
  earlyStoppingThreshold?: number;
  /** What to minimize (default cross-entropy on the targets; distill() passes a teacher's divergence). */
  objective?: TrainingObjective;
  /** Where metrics.jsonl, loss.svg, checkpoints and the final adapter go. */
  outputDir?: string;
  /** Continue from the latest checkpoint in outputDir (true) or from this checkpoint directory. */
  resume?: boolean | string;
  gradientCheckpointing?: boolean;
  /** Plain-text windows: tokens between window starts (default seqLen). */
  stride?: number;
  packing?: boolean;
  format?: "auto" | "text" | "jsonl";
  /** Use at most this many sequences (text) or records (JSONL). */
  maxExamples?: number;
  /** Jinja chat template for {"messages"} records when the model has none (or to replace its own). */
  chatTemplate?: string;
  /** Print progress (default true). */
  progress?: boolean;
  /** Called after every optimizer step. */
  onStep?: (r: StepRecord) => void;
  /** Stops training after the current step when aborted (a checkpoint is written). */
  signal?: AbortSignal;
  /**
   * "adamw" (state on the GPU, default) or "paged_adamw" (state paged to host memory and streamed
   * through GPU pages when gpuMemoryBudget would otherwise be exceeded; same updates bit for bit)
   * or "adamw_8bit" (m and v as 8-bit blockwise codes on the GPU, bitsandbytes' 8-bit AdamW).
   */
  optimizer?: OptimizerName;
  /**
   * GPU bytes our allocator may hold in all (weights included). Before training, the memory
   * planner predicts the peak per class and refuses with a suggestion when it will not fit.
   */
  gpuMemoryBudget?: number;
  /** paged_adamw: force paging with pages of this many values (otherwise sized from the budget). */
  pageElements?: number;
  /** Dynamic loss scaling of a model with computeDtype "f16" (GradScaler's defaults). */
  lossScaling?: LossScalerOptions;
}

export type Strategy = "steps" | "epoch" | "no";
export const STRATEGIES: readonly Strategy[] = ["steps", "epoch", "no"];

export interface StepRecord {
  step: number;
  /** Steps this run ends at. */
  totalSteps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  /** Training tokens per second so far, and seconds left: the figures of the progress line. */
  tokensPerSecond: number;
  etaSeconds: number;
}

export interface TrainResult {
  steps: number;
  totalSteps: number;
  losses: number[];
  evals: { step: number; loss: number }[];
  /** Eval loss before the first update (base model + fresh adapter). */
  initialEvalLoss?: number;
  /** Eval loss of the saved adapter (the best checkpoint's with loadBestModelAtEnd). */
  finalEvalLoss?: number;
  /** Interrupted (Ctrl-C or the abort signal): a checkpoint was written, no final adapter. */
  stoppedEarly: boolean;
  /** Ended by early stopping (patience exhausted); the final adapter is saved. */
  earlyStopped: boolean;
  /** Epochs done (fractional). */
  epochs: number;
  /** With loadBestModelAtEnd: the checkpoint whose adapter was loaded, and its eval loss. */
  bestCheckpoint?: string;
  bestEvalLoss?: number;
  outputDir?: string;
  /** The memory planner's prediction, made before training. */
  plan: TrainingPlan;
  /** Peak GPU bytes our allocator held during training (measured). */
  peakGpuBytes: number;
  /** computeDtype "f16": steps skipped because their gradients overflowed, and the final loss scale. */
  skippedSteps: number;
  lossScale?: number;
}

type OptionalKeys = "maxSteps" | "outputDir" | "onStep" | "signal" | "maxEvalBatches" | "stride" | "maxExamples" | "gpuMemoryBudget" | "pageElements" |
  "lossScaling" | "chatTemplate" | "saveTotalLimit" | "earlyStoppingPatience";
interface Resolved extends Required<Omit<TrainOptions, OptionalKeys>> {
  saveTotalLimit?: number;
  earlyStoppingPatience?: number;
  chatTemplate?: string;
  lossScaling?: LossScalerOptions;
  gpuMemoryBudget?: number;
  pageElements?: number;
  maxSteps?: number;
  outputDir?: string;
  maxEvalBatches?: number;
  stride?: number;
  maxExamples?: number;
}

/** HF TrainingArguments' defaults where PEFT users expect them. */
function resolve(o: TrainOptions): Resolved {
  const r: Resolved = {
    seqLen: 256, batchSize: 8, gradientAccumulationSteps: 1, learningRate: 2e-4, lrScheduler: "linear",
    warmupRatio: 0, warmupSteps: 0, weightDecay: 0, adamBeta1: 0.9, adamBeta2: 0.999, adamEpsilon: 1e-8,
    maxGradNorm: 1.0, epochs: 1, seed: 42, evalFraction: 0, evalSteps: 0, saveSteps: 0, resume: false,
    gradientCheckpointing: false, packing: false, format: "auto", progress: true, optimizer: "adamw",
    groupByLength: false, evalStrategy: "steps", saveStrategy: "steps", loadBestModelAtEnd: false, metricForBestModel: "eval_loss",
    earlyStoppingThreshold: 0, objective: CROSS_ENTROPY,
    ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)),
  } as Resolved;
  const posInt = (k: keyof Resolved, min = 1) => {
    const v = r[k];
    if (!Number.isInteger(v) || (v as number) < min) throw new PeftError("BAD_TRAIN_OPTION", `${k} must be an integer >= ${min}, got ${v}`);
  };
  posInt("seqLen");
  posInt("batchSize");
  posInt("gradientAccumulationSteps");
  if (!(Number.isFinite(r.epochs) && r.epochs > 0)) throw new PeftError("BAD_TRAIN_OPTION", `epochs must be a number > 0, got ${r.epochs}`);
  posInt("evalSteps", 0);
  posInt("saveSteps", 0);
  if (r.maxSteps !== undefined) posInt("maxSteps");
  if (r.maxEvalBatches !== undefined) posInt("maxEvalBatches");
  for (const k of ["learningRate", "weightDecay", "adamEpsilon", "maxGradNorm"] as const) {
    if (!Number.isFinite(r[k]) || r[k] < 0) throw new PeftError("BAD_TRAIN_OPTION", `${k} must be a number >= 0, got ${r[k]}`);
  }
  for (const k of ["adamBeta1", "adamBeta2"] as const) {
    if (!(r[k] >= 0 && r[k] < 1)) throw new PeftError("BAD_TRAIN_OPTION", `${k} must be in [0, 1), got ${r[k]}`);
  }
  if (!OPTIMIZERS.includes(r.optimizer)) throw new PeftError("BAD_TRAIN_OPTION", `optimizer must be one of ${OPTIMIZERS.join(", ")}, got ${JSON.stringify(r.optimizer)}`);
  if (r.gpuMemoryBudget !== undefined && !(Number.isFinite(r.gpuMemoryBudget) && r.gpuMemoryBudget > 0)) {
    throw new PeftError("BAD_TRAIN_OPTION", `gpuMemoryBudget must be a number of bytes > 0, got ${r.gpuMemoryBudget}`);
  }
  if (r.pageElements !== undefined) {
    posInt("pageElements");
    if (r.optimizer !== "paged_adamw") throw new PeftError("BAD_TRAIN_OPTION", "pageElements needs optimizer: \"paged_adamw\"");
  }
  if ((r.resume || r.saveSteps) && !r.outputDir) throw new PeftError("BAD_TRAIN_OPTION", "resume and saveSteps need outputDir");
  validateCheckpointing(r);
  return r;
}

/** Strategies, save_total_limit, load_best_model_at_end and early stopping: transformers' rules, each refusal naming the option. */
function validateCheckpointing(r: Resolved): void {
  const bad = (m: string) => new PeftError("BAD_TRAIN_OPTION", m);
  for (const k of ["evalStrategy", "saveStrategy"] as const) {
    if (!STRATEGIES.includes(r[k])) throw bad(`${k} must be one of ${STRATEGIES.join(", ")}, got ${JSON.stringify(r[k])}`);
  }
  if (r.saveTotalLimit !== undefined && !(Number.isInteger(r.saveTotalLimit) && r.saveTotalLimit >= 1)) throw bad(`saveTotalLimit must be an integer >= 1, got ${r.saveTotalLimit}`);
  if (r.saveStrategy === "epoch" && !r.outputDir) throw bad("saveStrategy \"epoch\" needs outputDir");
  if (!["eval_loss", "loss"].includes(r.metricForBestModel)) {
    throw bad(`metricForBestModel must be "eval_loss" (the only metric evaluation computes), got ${JSON.stringify(r.metricForBestModel)}`);
  }
  if (!(Number.isFinite(r.earlyStoppingThreshold) && r.earlyStoppingThreshold >= 0)) throw bad(`earlyStoppingThreshold must be a number >= 0, got ${r.earlyStoppingThreshold}`);
  if (r.earlyStoppingPatience !== undefined) {
    if (!(Number.isInteger(r.earlyStoppingPatience) && r.earlyStoppingPatience >= 1)) throw bad(`earlyStoppingPatience must be an integer >= 1, got ${r.earlyStoppingPatience}`);
    if (!r.loadBestModelAtEnd) throw bad("earlyStoppingPatience needs loadBestModelAtEnd (as transformers' EarlyStoppingCallback does)");
  }
  if (!r.loadBestModelAtEnd) return;
  if (!r.outputDir) throw bad("loadBestModelAtEnd needs outputDir (the best model is a checkpoint)");
  if (r.evalFraction <= 0) throw bad("loadBestModelAtEnd needs evaluation data (evalFraction > 0)");
  if (r.evalStrategy !== r.saveStrategy) {
    throw bad(`loadBestModelAtEnd needs evalStrategy and saveStrategy to match, got evalStrategy "${r.evalStrategy}" and saveStrategy "${r.saveStrategy}"`);
  }
  if (r.saveStrategy === "steps" && (r.saveSteps > 0 || r.evalSteps > 0) && !(r.evalSteps > 0 && r.saveSteps > 0 && r.saveSteps % r.evalSteps === 0)) {
    throw bad(`loadBestModelAtEnd needs saveSteps to be a multiple of evalSteps (checkpoints where evaluations are), got saveSteps ${r.saveSteps} and evalSteps ${r.evalSteps}`);
  }
}

/** A batch as the model's pass takes it; rows are numbered by `ids` (see TrainBatch.rowIds). */
function toTrainBatch(b: Batch, ids: Map<Example, number>): TrainBatch {
  return { B: b.rows, T: b.seqLen, inputs: b.input, targets: b.target, rowIds: Array.from({ length: b.rows }, (_, i) => ids.get(b.examples[i]) ?? -1) };
}

async function evaluate(model: TrainableModel, hooks: Hooks<Tensor>, examples: Example[], r: Resolved, ids: Map<Example, number>): Promise<number> {
  const list = evalBatches(examples, r.batchSize).slice(0, r.maxEvalBatches ?? Infinity);
  const s = await lossOver(model.gpu, list, (_, b) => r.objective.evalLoss(model.llama, hooks, toTrainBatch(b, ids)));
  return s.lossTokens ? s.sum / s.lossTokens : NaN;
}

// ------------------------------------------------------------------ the loop

export async function train(model: TrainableModel, options: TrainOptions): Promise<TrainResult> {
  const r = resolve(options);
  // Every output path is checked (and a killed run's temporaries removed) before any work.
  const stale = r.outputDir ? await prepareOutputDir(r.outputDir) : [];
  if (stale.length && r.progress) console.log(`[train] removed temporaries of an interrupted run: ${stale.join(", ")}`);
  const adapter = model.adapter(r.adapter);
  const ds = await loadDataset(r.data, model.tokenizer, {
    seqLen: r.seqLen, stride: r.stride, evalFraction: r.evalFraction, seed: r.seed, packing: r.packing, format: r.format, maxExamples: r.maxExamples,
    chatTemplate: r.chatTemplate,
  });
  const dataLabel = typeof r.data === "string" ? r.data : dataName(r.data);
  if (ds.train.length === 0) throw new PeftError("DATA_TOO_SHORT", `${dataLabel}: no training sequences after the eval split`);
  if (r.loadBestModelAtEnd && ds.eval.length === 0) throw new PeftError("BAD_TRAIN_OPTION", `loadBestModelAtEnd needs evaluation data: ${dataLabel} left no eval sequences`);
  const epochs = new EpochPlan(batchesPerEpoch(ds.train.length, r.batchSize), r.gradientAccumulationSteps, r);
  const totalSteps = epochs.totalSteps;
  const sched = { learningRate: r.learningRate, lrScheduler: r.lrScheduler, warmupRatio: r.warmupRatio, warmupSteps: r.warmupSteps, totalSteps };
  validateSchedule(sched);
  const say = (s: string) => r.progress && console.log(s);

  return await model.exclusive(async () => {
    // Plan before allocating anything for training: refuses (GPU_BUDGET_EXCEEDED) when over budget.
    // Pooled buffers left by earlier work go back first, so the plan (and the peak) start clean.
    model.gpu.trim();
    const plan = checkTrainingPlan(model, {
      adapter: r.adapter, batchSize: r.batchSize, seqLen: r.seqLen, gradientCheckpointing: r.gradientCheckpointing,
      optimizer: r.optimizer, gpuMemoryBudget: r.gpuMemoryBudget, pageElements: r.pageElements, evaluate: ds.eval.length > 0, objective: r.objective,
    });
    const scaler = model.computeDtype === "f16" ? new LossScaler(r.lossScaling) : null;
    say(`[train] ${adapter.method.describe(adapter.config)}; ${adapter.trainableParameters} trainable parameters; loss: ${r.objective.label}`);
    say(`[train] base weights ${describeBaseStorage(model.parameterReport())}; ` +
      `compute dtype ${model.computeDtype} (shader-f16 ${model.gpu.info.features.f16 ? "available" : "not available"}); adapter weights, gradients${r.optimizer === "adamw_8bit" ? " f32, optimizer state 8-bit" : " and optimizer state f32"}` +
      (scaler ? `; dynamic loss scaling from ${scaler.scale}` : ""));
    say(formatPlan(plan));
    model.gpu.resetPeak();
    const slots = adapter.trainable();
    const hooks = adapter.hooks();
    const optimizerGpuBytes = r.gpuMemoryBudget === undefined ? undefined : r.gpuMemoryBudget - (plan.total - plan.optimizer.gpuBytes);
    const opt = createOptimizer(model.gpu, r.optimizer, slots, { gpuBytes: optimizerGpuBytes, pageElements: r.pageElements ?? plan.optimizer.pageElements });
    const best = new BestModelTracker({ patience: r.earlyStoppingPatience, threshold: r.earlyStoppingThreshold });
    let startStep = 0;
    let skippedBefore = 0;
    let metrics: MetricsWriter | undefined;
    const records: MetricRecord[] = [];
    if (r.outputDir) {
      const from = typeof r.resume === "string" ? r.resume : r.resume ? await latestCheckpoint(r.outputDir) : null;
      if (r.resume && !from) say(`[train] no checkpoint in ${r.outputDir}: starting from step 0`);
      if (from) {
        const state = await restoreCheckpoint(model, r.adapter, opt, from);
        startStep = Number(state.step);
        if (state.totalSteps !== undefined && Number(state.totalSteps) !== totalSteps) {
          console.warn(`[train] warning: ${from} comes from a run of ${state.totalSteps} steps and this run has ${totalSteps}: ` +
            `the learning-rate schedule (warmup, decay) now follows ${totalSteps} steps, so the result differs from the original run's`);
        }
        if (scaler && state.lossScale) scaler.restore(state.lossScale as LossScaleState);
        if (state.bestModel) best.state = state.bestModel as BestModelState;
        skippedBefore = Number(state.skippedSteps ?? 0);
        say(`[train] resumed from ${from} at step ${startStep}`);
        // Keep the metrics of the steps the checkpoint includes; later lines are replaced.
        let old: MetricRecord[] = [];
        try {
          old = parseMetrics(await readFile(join(r.outputDir, "metrics.jsonl"), "utf8"));
        } catch { /* no metrics yet */ }
        records.push(...old.filter((m) => m.step <= startStep));
      }
      // `time` continues from the checkpoint's last record, so it counts training time across resumes.
      metrics = await MetricsWriter.open(r.outputDir, { startTime: Math.max(0, ...records.map((m) => m.time ?? 0)) });
      for (const m of records) await metrics.write(m);
    }
    const evalBatchCount = evalBatches(ds.eval, r.batchSize).length;
    const evalCap = r.maxEvalBatches !== undefined && r.maxEvalBatches < evalBatchCount ? ` (each eval uses the first ${r.maxEvalBatches} of ${evalBatchCount} batches)` : "";
    say(`[train] ${ds.train.length} train / ${ds.eval.length} eval sequences of ${r.seqLen} tokens${evalCap}; ` +
      `${totalSteps} steps of ${r.batchSize}x${r.gradientAccumulationSteps} sequences (${epochs.stepsPerEpoch} an epoch, ${+epochs.epochAt(totalSteps).toPrecision(3)} epochs); ${model.gpu.info.description}`);

    const result: TrainResult = {
      steps: startStep, totalSteps, losses: [], evals: [], stoppedEarly: false, earlyStopped: false, epochs: epochs.epochAt(startStep), outputDir: r.outputDir, plan,
      peakGpuBytes: 0, skippedSteps: skippedBefore,
    };
    const record = async (m: MetricRecord) => {
      records.push(m);
      if (metrics) await metrics.write(m);
    };
    let lastEval = -1, lastSave = -1;
    const runEval = async (step: number) => {
      if (!ds.eval.length) return undefined;
      const t0 = performance.now();
      const loss = await evaluate(model, hooks, ds.eval, r, exampleIds);
      progress.evaluated((performance.now() - t0) / 1000);
      result.evals.push({ step, loss });
      await record({ step, eval_loss: loss, epoch: +epochs.epochAt(step).toFixed(4) });
      if (r.progress) progress.log(r.objective === CROSS_ENTROPY ? formatEval(step, loss) : `eval step ${step} | ${r.objective.label.split(":")[0]} loss ${loss.toFixed(4)}`);
      // The step-0 evaluation (of the untrained adapter) has no checkpoint: it is no candidate.
      if (step > 0) best.observe(step, loss);
      lastEval = step;
      return loss;
    };

    let interrupted = false;
    const onSigint = () => {
      interrupted = true;
    };
    const stopListening = onInterrupt(onSigint);
    const progress = new ProgressReporter({
      total: totalSteps, startStep, evalSteps: ds.eval.length && r.evalStrategy === "steps" ? r.evalSteps : undefined, evalSecondsEstimate: meanEvalSeconds(records),
      write: r.progress ? undefined : () => {},
    });
    // Sequences are numbered train first, then eval: the row ids a precomputed teacher file is keyed by.
    const exampleIds = new Map<Example, number>([...ds.train, ...ds.eval].map((e, i) => [e, i]));
    const epochCache = new Map<number, Batch[]>();
    const microBatch = (epoch: number, i: number): Batch => {
      let list = epochCache.get(epoch);
      if (!list) {
        epochCache.clear();
        epochCache.set(epoch, list = batches(ds.train, r.batchSize, r.seed, epoch, { groupByLength: r.groupByLength }));
      }
      return list[i];
    };
    const checkpoint = async (step: number) => {
      if (!r.outputDir) return;
      const dir = join(r.outputDir, `checkpoint-${step}`);
      best.saved(step, dir);
      await writeCheckpoint(model, r.adapter, opt, dir, {
        step, seed: r.seed, totalSteps, adapter: r.adapter, epoch: epochs.epochAt(step), bestModel: best.state,
        ...(scaler ? { lossScale: scaler.state(), skippedSteps: result.skippedSteps } : {}),
      });
      progress.log(`[train] checkpoint ${dir}`);
      lastSave = step;
      if (r.saveTotalLimit !== undefined) {
        const keep = r.loadBestModelAtEnd ? best.state.bestCheckpoint : undefined;
        for (const d of await rotateCheckpoints(r.outputDir, { limit: r.saveTotalLimit, step, keep })) progress.log(`[train] deleted ${d} (saveTotalLimit ${r.saveTotalLimit})`);
      }
    };
    const due = (strategy: Strategy, every: number, step: number) =>
      strategy === "steps" ? every > 0 && (step + 1) % every === 0 : strategy === "epoch" && epochs.endsEpoch(step);

    let failure: unknown;
    try {
      if (startStep === 0) result.initialEvalLoss = await runEval(0);
      for (let step = startStep; step < totalSteps; step++) {
        for (const s of opt.slots) model.gpu.clear(s.grad);
        const { epoch, indices } = epochs.microBatches(step);
        const micro = indices.map((i) => microBatch(epoch, i));
        const lossTokens = micro.reduce((s, b) => s + b.lossTokens, 0);
        let lossSum = 0;
        for (const [k, b] of micro.entries()) {
          const t = r.objective.lossAndGrads(model.llama, hooks, toTrainBatch(b, exampleIds), {
            seed: deriveSeed(r.seed, step, k),
            gradScale: (scaler?.scale ?? 1) / Math.max(1, lossTokens),
            checkpointing: r.gradientCheckpointing,
          });
          for (const v of await model.gpu.readF32(t)) lossSum += v;
          t.release();
        }
        const loss = lossSum / Math.max(1, lossTokens);
        if (!Number.isFinite(loss)) {
          throw new PeftError(
            "NAN_LOSS",
            `loss became ${loss} at step ${step + 1}; stopped before updating the adapter` +
              (r.outputDir ? ` (the last good checkpoint in ${r.outputDir} is kept)` : "") + "; try a lower learningRate",
          );
        }
        const sq = sumOfSquares(model.gpu, opt.slots.map((s) => s.grad));
        const scale = scaler?.scale ?? 1;
        const gradNorm = Math.sqrt((await model.gpu.readF32(sq))[0]) / scale;
        sq.release();
        const lr = lrAt(step, sched);
        if (!scaler || scaler.update(Number.isFinite(gradNorm))) {
          const clip = r.maxGradNorm > 0 ? Math.min(1, r.maxGradNorm / (gradNorm + 1e-6)) : 1;
          await opt.step({
            lr, beta1: r.adamBeta1, beta2: r.adamBeta2, eps: r.adamEpsilon, weightDecay: r.weightDecay, step: step + 1 - result.skippedSteps,
            gradScale: clip / scale, // unscales the f16 path's loss scale too
          });
        } else {
          // f16 overflow: no update (as GradScaler skips optimizer.step), the scale halves
          result.skippedSteps++;
          progress.log(`[train] step ${step + 1}: gradients overflowed in f16 at loss scale ${scale}; step skipped, scale now ${scaler.scale}`);
        }
        const done = step + 1;
        result.steps = done;
        result.epochs = epochs.epochAt(done);
        result.losses.push(loss);
        const tokens = micro.reduce((s, b) => s + b.rows * b.seqLen, 0);
        const tps = progress.step({ step: done, loss, lr, tokens });
        await record({ step: done, loss, lr, tokens_per_s: Math.round(tps), epoch: +result.epochs.toFixed(4) });
        options.onStep?.({ step: done, totalSteps, loss, lr, gradNorm, tokens, tokensPerSecond: tps, etaSeconds: progress.eta(done) });
        if (done < totalSteps && due(r.evalStrategy, r.evalSteps, step)) await runEval(done);
        if (done < totalSteps && due(r.saveStrategy, r.saveSteps, step)) await checkpoint(done);
        if (best.shouldStop && done < totalSteps) {
          result.earlyStopped = true;
          progress.log(`[train] early stopping at step ${done}: eval loss has not improved on ${best.state.bestMetric!.toFixed(4)} (step ${best.state.bestStep}) for ${r.earlyStoppingPatience} evaluations`);
          break;
        }
        if ((interrupted || options.signal?.aborted) && done < totalSteps) {
          result.stoppedEarly = true;
          await checkpoint(done);
          progress.log(`[train] stopped at step ${done}; resume with --resume`);
          break;
        }
      }
      progress.finish();
      if (!result.stoppedEarly) {
        result.finalEvalLoss = lastEval === result.steps ? result.evals.at(-1)!.loss : await runEval(result.steps);
        if (r.outputDir) {
          if (lastSave !== result.steps) await checkpoint(result.steps);
          const b = best.state;
          if (r.loadBestModelAtEnd && b.bestCheckpoint) {
            await restoreAdapter(model, r.adapter, b.bestCheckpoint);
            Object.assign(result, { bestCheckpoint: b.bestCheckpoint, bestEvalLoss: b.bestMetric, finalEvalLoss: b.bestMetric });
            say(`[train] loaded the best checkpoint ${b.bestCheckpoint} (eval loss ${b.bestMetric!.toFixed(4)} at step ${b.bestStep})`);
          }
          await model.saveAdapter(r.adapter, join(r.outputDir, "adapter"));
        }
      }
    } catch (e) {
      failure = e;
      throw e;
    } finally {
      stopListening();
      result.peakGpuBytes = model.gpu.peakBytesHeld();
      result.lossScale = scaler?.scale;
      opt.release();
      if (r.outputDir) {
        await writeRunFile(join(r.outputDir, "loss.svg"), lossCurveSvg(
          records.map((m) => ({ step: m.step, loss: m.loss, evalLoss: m.eval_loss })),
          { title: `${adapter.method.label(adapter.config)} ${r.objective === CROSS_ENTROPY ? "fine-tune" : "distillation"} of ${model.source.split("/").pop()} (${r.adapter})` },
        ), failure);
      }
    }
    return result;
  });
}
