/**
 * The training pass: the batched forward of block.ts on the autodiff graph (so the backward is
 * the graph's, through every hook), the chunked head and its loss (cross-entropy, or the
 * distillation loss against a frozen teacher's logits for the same rows), and evaluation.
 * Trainable parameters are whatever the hooks of the pass register with gradient buffers; the
 * base weights are frozen. With `checkpointing`, only each block's input is kept and the block
 * is recomputed (same dropout seeds, so identical) during the backward.
 */
import { PeftError } from "../errors.ts";
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import { crossEntropy } from "../kernels/cross_entropy.ts";
import { generalizedJsd } from "../kernels/distill.ts";
import { axpy, scale } from "../kernels/elementwise.ts";
import { matmul } from "../kernels/matmul.ts";
import { type BlockContext, blocks, dropVirtualRows, embed, finalNorm, sequencePositions } from "./block.ts";
import { Graph, type V } from "./graph.ts";
import type { LlamaGpu } from "./llama.ts";
import { isQuantized, linearMatmul, linearMatmulBackward } from "./quantized.ts";
import { type Hooks, virtualTokens } from "./sites.ts";

export interface TrainBatch {
  B: number;
  T: number;
  /** Token ids, B*T. */
  inputs: ArrayLike<number>;
  /** Next-token targets, B*T, -100 = no loss. */
  targets: ArrayLike<number>;
  /** Which sequence each row is (numbered by the caller), for losses that look up precomputed data (a teacher's logits). */
  rowIds?: ArrayLike<number>;
}

export interface PassOptions {
  /** Dropout seed of this micro-batch (hooks derive their own from it). */
  seed: number;
  /** Multiplies dlogits: 1 / (non-ignored targets · accumulation steps) for a mean loss. */
  gradScale: number;
  checkpointing?: boolean;
}

/**
 * A loss over one chunk of head rows: `logits` are rows r0..r0+n of the batch [n, V]. Returns the
 * per-row loss [n] and, when grad, dlogits [n, V] (it may be `logits`, overwritten).
 */
type ChunkLoss = (logits: Tensor, r0: number, n: number, grad: boolean) => { loss: Tensor; dlogits?: Tensor };

/** The frozen head over the final norm's output, in row chunks: logits, and dx from dlogits. */
class Head {
  readonly head;
  constructor(readonly llama: LlamaGpu, readonly rows: number) {
    const c = llama.config;
    this.head = llama.lw(c.tiedEmbeddings ? "token_embd.weight" : "output.weight");
  }
  get gpu(): Gpu {
    return this.llama.gpu;
  }

  /** Rows per head/loss chunk so a [rows, V] logits buffer stays well under the binding limit. */
  chunkRows(): number {
    const V = this.llama.config.vocabSize;
    const limit = Math.min(this.gpu.info.limits.maxStorageBufferBindingSize, 64 * 2 ** 20);
    return Math.max(1, Math.min(this.rows, Math.floor(limit / (V * 4))));
  }

  /** Logits [n, V] of rows r0..r0+n of xf [rows, dim]. Caller releases. */
  logits(xf: Tensor, r0: number, n: number): Tensor {
    const { gpu, head } = this;
    const c = this.llama.config;
    if (isQuantized(head) || head.dtype === "f16") {
      // The 4-bit and f16 paths take no row offset: copy the chunk's rows out (only when chunked).
      if (n === this.rows) return linearMatmul(gpu, xf, head, { M: n, compute: this.llama.computeDtype });
      const xq = gpu.tensor([n, c.dim]);
      gpu.copy(xf, xq, n * c.dim * 4, r0 * c.dim * 4, 0);
      const out = linearMatmul(gpu, xq, head, { M: n, compute: this.llama.computeDtype });
      xq.release();
      return out;
    }
    return matmul(gpu, xf, head, { M: n, N: c.vocabSize, K: c.dim, transB: true, aOffset: r0 * c.dim });
  }

  /**
   * The loss over every row of xf, chunk by chunk. Returns per-row losses [rows] and, when
   * `grad`, the gradient w.r.t. xf.
   */
  lossOf(xf: Tensor, grad: boolean, lossOf: ChunkLoss): { loss: Tensor; dxf?: Tensor } {
    const { gpu, rows } = this;
    const c = this.llama.config;
    const loss = gpu.tensor([rows]);
    const dxf = grad ? gpu.tensor([rows, c.dim]) : undefined;
    const chunk = this.chunkRows();
    for (let r0 = 0; r0 < rows; r0 += chunk) {
      const n = Math.min(chunk, rows - r0);
      const logits = this.logits(xf, r0, n);
      const { loss: l, dlogits } = lossOf(logits, r0, n, grad);
      gpu.copy(l, loss, n * 4, 0, r0 * 4);
      l.release();
      if (dlogits && dxf) {
        const d = linearMatmulBackward(gpu, dlogits, this.head, { M: n, compute: this.llama.computeDtype });
        gpu.copy(d, dxf, n * c.dim * 4, 0, r0 * c.dim * 4);
        d.release();
        if (dlogits !== logits) dlogits.release();
      }
      logits.release();
    }
    return { loss, dxf };
  }
}

/** The targets of rows r0..r0+n on the GPU (i32). Caller releases. */
function uploadTargets(gpu: Gpu, batch: TrainBatch, r0: number, n: number): Tensor {
  return gpu.upload(Int32Array.from({ length: n }, (_, i) => batch.targets[r0 + i]), [n], "i32", "activations");
}

/** Cross-entropy against the batch's targets; dlogits (gradScale applied) over the logits. */
function crossEntropyLoss(llama: LlamaGpu, batch: TrainBatch, gradScale: number): ChunkLoss {
  const gpu = llama.gpu, V = llama.config.vocabSize;
  return (logits, r0, n, grad) => {
    const tgt = uploadTargets(gpu, batch, r0, n);
    const out = crossEntropy(gpu, logits, tgt, { N: n, V, grad, gradScale, inPlace: grad });
    tgt.release();
    return out;
  };
}

function checkBatch(llama: LlamaGpu, b: TrainBatch) {
  const n = b.B * b.T;
  if (!(b.B > 0 && b.T > 0) || b.inputs.length !== n || b.targets.length !== n) {
    throw new PeftError("BAD_BATCH", `batch of B=${b.B}, T=${b.T} needs ${n} inputs and targets, got ${b.inputs.length} and ${b.targets.length}`);
  }
  if (b.T > llama.config.contextLength) {
    throw new PeftError("CONTEXT_OVERFLOW", `sequence length ${b.T} exceeds the model's context length ${llama.config.contextLength}`);
  }
}


/** Checks ids and shapes, and uploads the input ids. */
function uploadInputs(llama: LlamaGpu, b: TrainBatch): Tensor {
  checkBatch(llama, b);
  const V = llama.config.vocabSize;
  for (let i = 0; i < b.inputs.length; i++) {
    const id = b.inputs[i];
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new PeftError("BAD_TOKEN", `input token ${id} at row ${i} is outside the vocabulary`);
  }
  return llama.gpu.upload(Uint32Array.from(b.inputs), [b.inputs.length], "u32", "activations");
}

/**
 * The final norm's output [B*T, dim] of a forward pass through the blocks (the rows of virtual
 * tokens that prompt-style methods prepend dropped); taped when the graph records.
 */
function hidden(g: Graph<Tensor>, llama: LlamaGpu, hooks: Hooks<Tensor>, batch: TrainBatch, ids: Tensor, checkpointing: boolean): V<Tensor> {
  const c: BlockContext<Tensor> = { g, config: llama.config, hooks, positions: sequencePositions(hooks, batch.B, batch.T, llama.config) };
  const x = blocks(c, embed(c, ids, batch.B), checkpointing);
  return finalNorm(c, dropVirtualRows(g, x, hooks.embedPrefix ? virtualTokens(hooks) : 0, batch.B));
}

/** Runs the pass with `loss` over the head's chunks; returns per-row losses [B*T]. Caller releases the loss. */
function pass(llama: LlamaGpu, hooks: Hooks<Tensor>, batch: TrainBatch, o: PassOptions & { grad: boolean; training: boolean }, loss: ChunkLoss): Tensor {
  const ids = uploadInputs(llama, batch);
  const g = new Graph(llama.backend(), { grad: o.grad, training: o.training, seed: o.seed });
  try {
    const xf = hidden(g, llama, hooks, batch, ids, o.grad && !!o.checkpointing);
    const out = new Head(llama, batch.B * batch.T).lossOf(xf.value, o.grad, loss);
    g.free(xf); // the backward needs xf's node, not its values
    if (out.dxf) g.backward(xf, out.dxf).releaseAll();
    return out.loss;
  } finally {
    g.dispose();
    ids.release();
  }
}

/**
 * Forward + backward of one micro-batch: accumulates the gradients of every trainable parameter
 * the hooks register and returns the per-row losses [B*T]. Caller releases the loss.
 */
export function lossAndGrads(llama: LlamaGpu, hooks: Hooks<Tensor>, batch: TrainBatch, o: PassOptions): Tensor {
  return pass(llama, hooks, batch, { ...o, grad: true, training: true }, crossEntropyLoss(llama, batch, o.gradScale));
}

/** Forward only (eval, no dropout): per-row losses [B*T]. */
export function evalLoss(llama: LlamaGpu, hooks: Hooks<Tensor>, batch: TrainBatch): Tensor {
  return pass(llama, hooks, batch, { seed: 0, gradScale: 1, grad: false, training: false }, crossEntropyLoss(llama, batch, 1));
}

// ------------------------------------------------------------------ distillation

/**
 * The teacher of a distillation pass: a frozen model with its own hooks (another model of the
 * same vocabulary, or the student's base with a teacher adapter), run forward on the same batch;
 * or log-probabilities at the distillation temperature from elsewhere (a precomputed file):
 * `logProbs(r0, n)` gives rows r0..r0+n of the batch as [n, V].
 */
export type Teacher =
  | { llama: LlamaGpu; hooks: Hooks<Tensor> }
  | { logProbs: (r0: number, n: number) => Float32Array };

export interface DistillLossOptions {
  /** TRL's generalized JSD: 0 forward KL(teacher ‖ student), 1 reverse KL, in between the mixture. */
  beta: number;
  /** Divides student and teacher logits. */
  temperature: number;
  /** loss = (1 - ceWeight)·JSD + ceWeight·cross-entropy on the targets. */
  ceWeight: number;
}

/** Refuses a teacher whose vocabulary differs from the student's (their logits must align). */
export function checkTeacher(llama: LlamaGpu, teacher: Teacher): void {
  if (!("llama" in teacher)) return;
  const s = llama.config.vocabSize, t = teacher.llama.config.vocabSize;
  if (s !== t) {
    throw new PeftError("TEACHER_VOCAB_MISMATCH", `the teacher's vocabulary has ${t} tokens and the student's ${s}: distillation compares their next-token distributions, so they must share one tokenizer`);
  }
}

/** The teacher's final-norm output for the batch, forward only (no tape, no dropout). Caller releases. */
function teacherHidden(teacher: { llama: LlamaGpu; hooks: Hooks<Tensor> }, batch: TrainBatch): Tensor {
  const ids = uploadInputs(teacher.llama, batch);
  const g = new Graph(teacher.llama.backend(), { grad: false, training: false, seed: 0 });
  try {
    return g.detach(hidden(g, teacher.llama, teacher.hooks, batch, ids, false));
  } finally {
    g.dispose();
    ids.release();
  }
}

/**
 * The distillation loss per head chunk: the teacher's logits for the same rows (from its hidden
 * state, so only one chunk of them exists at a time), the JSD with its gradient, and the
 * cross-entropy mixed in by ceWeight. Call `release` when the pass is done.
 */
function distillLoss(llama: LlamaGpu, batch: TrainBatch, teacher: Teacher, d: DistillLossOptions, gradScale: number) {
  const gpu = llama.gpu, V = llama.config.vocabSize, rows = batch.B * batch.T;
  const th = "llama" in teacher ? teacherHidden(teacher, batch) : undefined;
  const head = "llama" in teacher ? new Head(teacher.llama, rows) : undefined;
  const teacherChunk = (r0: number, n: number) =>
    head ? head.logits(th!, r0, n) : gpu.upload((teacher as { logProbs: (r0: number, n: number) => Float32Array }).logProbs(r0, n), [n, V], "f32", "activations");
  const loss: ChunkLoss = (logits, r0, n, grad) => {
    const tgt = uploadTargets(gpu, batch, r0, n);
    const t = teacherChunk(r0, n);
    const jsd = { N: n, V, beta: d.beta, temperature: d.temperature, teacherTemperature: head ? d.temperature : 1 };
    let out: { loss: Tensor; dlogits?: Tensor };
    if (d.ceWeight === 0) {
      out = generalizedJsd(gpu, logits, t, tgt, { ...jsd, grad: grad ? "inPlace" : undefined, gradScale });
    } else {
      // The cross-entropy's gradient first (the logits stay intact), the JSD's added to it.
      const ce = crossEntropy(gpu, logits, tgt, { N: n, V, grad, gradScale: d.ceWeight * gradScale });
      const kd = generalizedJsd(gpu, logits, t, tgt, { ...jsd, grad: grad ? "accumulate" : undefined, into: ce.dlogits, gradScale: (1 - d.ceWeight) * gradScale });
      const mixed = scale(gpu, kd.loss, 1 - d.ceWeight);
      axpy(gpu, mixed, ce.loss, d.ceWeight);
      kd.loss.release();
      ce.loss.release();
      out = { loss: mixed, dlogits: ce.dlogits };
    }
    t.release();
    tgt.release();
    return out;
  };
  return { loss, release: () => th?.release() };
}

/**
 * Distillation forward + backward of one micro-batch: the teacher's forward (frozen, no tape) and
 * the student's pass with the distillation loss; accumulates the student's gradients and returns
 * its per-row losses [B*T]. Caller releases the loss.
 */
export function distillLossAndGrads(llama: LlamaGpu, hooks: Hooks<Tensor>, batch: TrainBatch, teacher: Teacher, d: DistillLossOptions, o: PassOptions): Tensor {
  checkTeacher(llama, teacher);
  const loss = distillLoss(llama, batch, teacher, d, o.gradScale);
  try {
    return pass(llama, hooks, batch, { ...o, grad: true, training: true }, loss.loss);
  } finally {
    loss.release();
  }
}

/** The distillation loss per row [B*T], forward only (eval). */
export function distillEvalLoss(llama: LlamaGpu, hooks: Hooks<Tensor>, batch: TrainBatch, teacher: Teacher, d: DistillLossOptions): Tensor {
  checkTeacher(llama, teacher);
  const loss = distillLoss(llama, batch, teacher, d, 1);
  try {
    return pass(llama, hooks, batch, { seed: 0, gradScale: 1, grad: false, training: false }, loss.loss);
  } finally {
    loss.release();
  }
}

/** Logits [B*T, V] of a batch, forward only (no tape, no dropout), e.g. to store a teacher's top-k. Caller releases. */
export function batchLogits(model: { llama: LlamaGpu; hooks: Hooks<Tensor> }, batch: TrainBatch): Tensor {
  const rows = batch.B * batch.T, V = model.llama.config.vocabSize;
  const th = teacherHidden(model, batch);
  const head = new Head(model.llama, rows);
  const out = model.llama.gpu.tensor([rows, V]);
  for (let r0 = 0; r0 < rows; r0 += head.chunkRows()) {
    const n = Math.min(head.chunkRows(), rows - r0);
    const l = head.logits(th, r0, n);
    model.llama.gpu.copy(l, out, n * V * 4, 0, r0 * V * 4);
    l.release();
  }
  th.release();
  return out;
}

/** The teacher's forward alone over a batch (its hidden state and every chunk of its logits), for benchmarks. */
export function teacherForward(teacher: { llama: LlamaGpu; hooks: Hooks<Tensor> }, batch: TrainBatch): void {
  const rows = batch.B * batch.T;
  const th = teacherHidden(teacher, batch);
  const head = new Head(teacher.llama, rows);
  for (let r0 = 0; r0 < rows; r0 += head.chunkRows()) head.logits(th, r0, Math.min(head.chunkRows(), rows - r0)).release();
  th.release();
}
