/**
 * The training pass: the batched forward of block.ts on the autodiff graph (so the backward is
 * the graph's, through every hook), the chunked head and cross-entropy, and evaluation.
 * Trainable parameters are whatever the hooks of the pass register with gradient buffers; the
 * base weights are frozen. With `checkpointing`, only each block's input is kept and the block
 * is recomputed (same dropout seeds, so identical) during the backward.
 */
import { PeftError } from "../errors.ts";
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import { crossEntropy } from "../kernels/cross_entropy.ts";
import { matmul } from "../kernels/matmul.ts";
import { type BlockContext, blocks, dropVirtualRows, embed, finalNorm, sequencePositions } from "./block.ts";
import { Graph } from "./graph.ts";
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
}

export interface PassOptions {
  /** Dropout seed of this micro-batch (hooks derive their own from it). */
  seed: number;
  /** Multiplies dlogits: 1 / (non-ignored targets · accumulation steps) for a mean loss. */
  gradScale: number;
  checkpointing?: boolean;
}

/** The frozen final norm's output through the head, with cross-entropy per row (and dx when grad). */
class Head {
  constructor(readonly llama: LlamaGpu, readonly batch: TrainBatch, readonly gradScale: number) {}
  get gpu(): Gpu {
    return this.llama.gpu;
  }
  get rows(): number {
    return this.batch.B * this.batch.T;
  }

  /** Rows per head/cross-entropy chunk so a [rows, V] logits buffer stays well under the binding limit. */
  private headChunkRows(): number {
    const V = this.llama.config.vocabSize;
    const limit = Math.min(this.gpu.info.limits.maxStorageBufferBindingSize, 64 * 2 ** 20);
    return Math.max(1, Math.min(this.rows, Math.floor(limit / (V * 4))));
  }

  /**
   * Head and cross-entropy over row chunks of the normed hidden state xf. Returns per-row losses
   * [rows] and, when `grad`, the gradient w.r.t. xf.
   */
  lossOf(xf: Tensor, grad: boolean): { loss: Tensor; dxf?: Tensor } {
    const { gpu, rows } = this;
    const c = this.llama.config;
    const V = c.vocabSize;
    const head = this.llama.lw(c.tiedEmbeddings ? "token_embd.weight" : "output.weight");
    const loss = gpu.tensor([rows]);
    const dxf = grad ? gpu.tensor([rows, c.dim]) : undefined;
    const chunk = this.headChunkRows();
    for (let r0 = 0; r0 < rows; r0 += chunk) {
      const n = Math.min(chunk, rows - r0);
      let logits: Tensor;
      let xq: Tensor | undefined;
      const compute = this.llama.computeDtype;
      if (isQuantized(head) || head.dtype === "f16") {
        // The 4-bit and f16 paths take no row offset: copy the chunk's rows out (only when chunked).
        if (n !== rows) {
          xq = gpu.tensor([n, c.dim]);
          gpu.copy(xf, xq, n * c.dim * 4, r0 * c.dim * 4, 0);
        }
        logits = linearMatmul(gpu, xq ?? xf, head, { M: n, compute });
      } else {
        logits = matmul(gpu, xf, head, { M: n, N: V, K: c.dim, transB: true, aOffset: r0 * c.dim });
      }
      const tgt = gpu.upload(Int32Array.from({ length: n }, (_, i) => this.batch.targets[r0 + i]), [n], "i32", "activations");
      const { loss: l, dlogits } = crossEntropy(gpu, logits, tgt, { N: n, V, grad, gradScale: this.gradScale, inPlace: grad });
      gpu.copy(l, loss, n * 4, 0, r0 * 4);
      l.release();
      tgt.release();
      if (dlogits && dxf) {
        const d = linearMatmulBackward(gpu, dlogits, head, { M: n, compute });
        gpu.copy(d, dxf, n * c.dim * 4, 0, r0 * c.dim * 4);
        d.release();
      }
      logits.release();
      xq?.release();
    }
    return { loss, dxf };
  }
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

/** Runs the pass; returns per-row losses [B*T] (0 where the target is ignored). Caller releases the loss. */
function pass(llama: LlamaGpu, hooks: Hooks<Tensor>, batch: TrainBatch, o: PassOptions & { grad: boolean; training: boolean }): Tensor {
  const ids = uploadInputs(llama, batch);
  const g = new Graph(llama.backend(), { grad: o.grad, training: o.training, seed: o.seed });
  try {
    const c: BlockContext<Tensor> = { g, config: llama.config, hooks, positions: sequencePositions(hooks, batch.B, batch.T, llama.config) };
    const x = blocks(c, embed(c, ids, batch.B), o.grad && o.checkpointing);
    const xf = finalNorm(c, dropVirtualRows(g, x, hooks.embedPrefix ? virtualTokens(hooks) : 0, batch.B));
    const { loss, dxf } = new Head(llama, batch, o.gradScale).lossOf(xf.value, o.grad);
    g.free(xf); // the backward needs xf's node, not its values
    if (dxf) g.backward(xf, dxf).releaseAll();
    return loss;
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
  return pass(llama, hooks, batch, { ...o, grad: true, training: true });
}

/** Forward only (eval, no dropout): per-row losses [B*T]. */
export function evalLoss(llama: LlamaGpu, hooks: Hooks<Tensor>, batch: TrainBatch): Tensor {
  return pass(llama, hooks, batch, { seed: 0, gradScale: 1, grad: false, training: false });
}
