/**
 * Training pass of the llama model for LoRA: a batched forward that keeps what the backward
 * needs (a tape per block), the loss, and the backward through every op to the LoRA factors.
 * The base weights are frozen: gradients flow to the activations and to LoRA A/B only.
 *
 * LoRA linear:  y = x·Wᵀ + s·(drop(x)·Aᵀ)·Bᵀ
 *   dB += s·dyᵀ·(drop(x)·Aᵀ)      dA += s·(dy·B)ᵀ·drop(x)      dx = dy·W + drop'(s·(dy·B)·A)
 * With `checkpointing`, only each block's input is kept and the block's forward is recomputed
 * (same dropout seeds, so identical) during the backward.
 */
import { PeftError } from "../errors.ts";
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import { attention, attentionBackward, type AttentionOptions } from "../kernels/attention.ts";
import { crossEntropy } from "../kernels/cross_entropy.ts";
import { add, axpy, dropout } from "../kernels/elementwise.ts";
import { embedding } from "../kernels/embedding.ts";
import { matmul } from "../kernels/matmul.ts";
import { rmsnorm, rmsnormBackward } from "../kernels/rmsnorm.ts";
import { rope } from "../kernels/rope.ts";
import { swiglu, swigluBackward } from "../kernels/swiglu.ts";
import { deriveSeed } from "../train/rng.ts";
import { GGUF_TO_HF_MODULE, LINEAR_MODULES } from "./config.ts";
import type { LlamaGpu } from "./llama.ts";
import { isQuantized, linearMatmul, linearMatmulBackward } from "./quantized.ts";

/** One trainable LoRA pair on the GPU with its gradient buffers. */
export interface TrainableLoraLayer {
  A: Tensor; // [r, in]
  B: Tensor; // [out, r]
  dA: Tensor;
  dB: Tensor;
  r: number;
}

export interface TrainableLora {
  scale: number;
  dropout: number;
  /** Keyed by GGUF weight name, e.g. "blk.0.attn_q.weight". */
  layers: Map<string, TrainableLoraLayer>;
}

export interface TrainBatch {
  B: number;
  T: number;
  /** Token ids, B*T. */
  inputs: ArrayLike<number>;
  /** Next-token targets, B*T, -100 = no loss. */
  targets: ArrayLike<number>;
}

export interface PassOptions {
  /** Dropout seed of this micro-batch (every LoRA linear derives its own from it). */
  seed: number;
  /** Multiplies dlogits: 1 / (non-ignored targets · accumulation steps) for a mean loss. */
  gradScale: number;
  checkpointing?: boolean;
}

interface LoraSaved {
  xd: Tensor; // drop(x) (x itself when no dropout: not owned)
  ownsXd: boolean;
  ax: Tensor; // drop(x)·Aᵀ [rows, r]
}

interface BlockTape {
  xIn: Tensor;
  xn: Tensor;
  rstd1: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  att: Tensor;
  lse: Tensor;
  xMid: Tensor;
  xn2: Tensor;
  rstd2: Tensor;
  g: Tensor;
  u: Tensor;
  h: Tensor;
  lora: Map<string, LoraSaved>;
}

/** Per-linear dropout seed, independent for every (micro-batch seed, layer, module). */
function linearSeed(seed: number, name: string): number {
  const [, layer, mod] = name.split(".");
  return deriveSeed(seed, Number(layer), LINEAR_MODULES.indexOf(GGUF_TO_HF_MODULE[mod]));
}

class TrainPass {
  readonly gpu: Gpu;
  readonly rows: number;
  constructor(readonly llama: LlamaGpu, readonly lora: TrainableLora | undefined, readonly batch: TrainBatch, readonly o: PassOptions) {
    this.gpu = llama.gpu;
    this.rows = batch.B * batch.T;
  }

  private w(name: string) {
    return this.llama.w(name);
  }

  /** Forward of one linear; saves the LoRA intermediates into `saved` when given. */
  linearForward(x: Tensor, name: string, out: number, inn: number, saved?: Map<string, LoraSaved>): Tensor {
    const { gpu, rows } = this;
    // The frozen base: f32 or 4-bit (dequantized on the fly; never an f32 copy of W on the GPU).
    const y = linearMatmul(gpu, x, this.llama.lw(name), { M: rows, compute: this.llama.computeDtype });
    const l = this.lora?.layers.get(name);
    if (l && this.lora) {
      const p = this.lora.dropout;
      const xd = p > 0 ? dropout(gpu, x, p, linearSeed(this.o.seed, name)) : x;
      const ax = matmul(gpu, xd, l.A, { M: rows, N: l.r, K: inn, transB: true });
      matmul(gpu, ax, l.B, { M: rows, N: out, K: l.r, transB: true, alpha: this.lora.scale, accumulate: true, out: y });
      if (saved) saved.set(name, { xd, ownsXd: p > 0, ax });
      else {
        ax.release();
        if (p > 0) xd.release();
      }
    }
    return y;
  }

  /** Backward of one linear: accumulates LoRA grads, returns dx (or adds it into `into`). */
  linearBackward(dy: Tensor, name: string, out: number, inn: number, saved: Map<string, LoraSaved>, into?: Tensor): Tensor {
    const { gpu, rows } = this;
    const dx = linearMatmulBackward(gpu, dy, this.llama.lw(name), { M: rows, accumulate: !!into, out: into, compute: this.llama.computeDtype });
    const l = this.lora?.layers.get(name);
    const s = saved.get(name);
    if (l && s && this.lora) {
      const scale = this.lora.scale, p = this.lora.dropout;
      matmul(gpu, dy, s.ax, { M: out, N: l.r, K: rows, transA: true, alpha: scale, accumulate: true, out: l.dB });
      const dyB = matmul(gpu, dy, l.B, { M: rows, N: l.r, K: out });
      matmul(gpu, dyB, s.xd, { M: l.r, N: inn, K: rows, transA: true, alpha: scale, accumulate: true, out: l.dA });
      if (p > 0) {
        const dxd = matmul(gpu, dyB, l.A, { M: rows, N: inn, K: l.r, alpha: scale });
        const masked = dropout(gpu, dxd, p, linearSeed(this.o.seed, name));
        axpy(gpu, dx, masked, 1);
        dxd.release();
        masked.release();
      } else {
        matmul(gpu, dyB, l.A, { M: rows, N: inn, K: l.r, alpha: scale, accumulate: true, out: dx });
      }
      dyB.release();
    }
    return dx;
  }

  attentionOptions(): AttentionOptions {
    const c = this.llama.config;
    const { B, T } = this.batch;
    return { B, T, S: T, kvStride: T, pos0: 0, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim, saveLse: true };
  }

  private ropeInPlace(t: Tensor, nHeads: number, inverse: boolean) {
    const c = this.llama.config;
    rope(this.gpu, t, { N: this.rows, T: this.batch.T, pos0: 0, nHeads, headDim: c.headDim, ropeDim: c.ropeDim, base: c.ropeBase, inverse, out: t });
  }

  /** One block's forward from xIn (not consumed). Returns the tape (which owns xOut's inputs) and xOut. */
  blockForward(l: number, xIn: Tensor): { tape: BlockTape; xOut: Tensor } {
    const { gpu, rows } = this;
    const c = this.llama.config;
    const p = `blk.${l}.`;
    const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
    const lora = new Map<string, LoraSaved>();
    const { y: xn, rstd: rstd1 } = rmsnorm(gpu, xIn, this.w(p + "attn_norm.weight"), { N: rows, C: c.dim, eps: c.normEps, saveRstd: true });
    const q = this.linearForward(xn, p + "attn_q.weight", qDim, c.dim, lora);
    const k = this.linearForward(xn, p + "attn_k.weight", kvDim, c.dim, lora);
    const v = this.linearForward(xn, p + "attn_v.weight", kvDim, c.dim, lora);
    this.ropeInPlace(q, c.nHeads, false);
    this.ropeInPlace(k, c.nKvHeads, false);
    const { out: att, lse } = attention(gpu, q, k, v, this.attentionOptions());
    const o = this.linearForward(att, p + "attn_output.weight", c.dim, qDim, lora);
    const xMid = add(gpu, xIn, o);
    o.release();
    const { y: xn2, rstd: rstd2 } = rmsnorm(gpu, xMid, this.w(p + "ffn_norm.weight"), { N: rows, C: c.dim, eps: c.normEps, saveRstd: true });
    const g = this.linearForward(xn2, p + "ffn_gate.weight", c.hiddenDim, c.dim, lora);
    const u = this.linearForward(xn2, p + "ffn_up.weight", c.hiddenDim, c.dim, lora);
    const h = swiglu(gpu, g, u);
    const dn = this.linearForward(h, p + "ffn_down.weight", c.dim, c.hiddenDim, lora);
    const xOut = add(gpu, xMid, dn);
    dn.release();
    return { tape: { xIn, xn, rstd1: rstd1!, q, k, v, att, lse: lse!, xMid, xn2, rstd2: rstd2!, g, u, h, lora }, xOut };
  }

  /** Releases a tape's tensors except xIn (owned by the caller). */
  releaseTape(t: BlockTape) {
    for (const x of [t.xn, t.rstd1, t.q, t.k, t.v, t.att, t.lse, t.xMid, t.xn2, t.rstd2, t.g, t.u, t.h]) x.release();
    for (const s of t.lora.values()) {
      s.ax.release();
      if (s.ownsXd) s.xd.release();
    }
  }

  /** Backward of one block: dOut (consumed) -> dIn. */
  blockBackward(l: number, t: BlockTape, dOut: Tensor): Tensor {
    const { gpu, rows } = this;
    const c = this.llama.config;
    const p = `blk.${l}.`;
    const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
    // x_out = x_mid + down(swiglu(gate(n2), up(n2))), n2 = norm(x_mid)
    const dh = this.linearBackward(dOut, p + "ffn_down.weight", c.dim, c.hiddenDim, t.lora);
    const { dgate, dup } = swigluBackward(gpu, dh, t.g, t.u);
    dh.release();
    const dxn2 = this.linearBackward(dgate, p + "ffn_gate.weight", c.hiddenDim, c.dim, t.lora);
    this.linearBackward(dup, p + "ffn_up.weight", c.hiddenDim, c.dim, t.lora, dxn2);
    dgate.release();
    dup.release();
    const { dx: dMidNorm } = rmsnormBackward(gpu, dxn2, t.xMid, this.w(p + "ffn_norm.weight"), t.rstd2, { N: rows, C: c.dim });
    dxn2.release();
    const dMid = add(gpu, dOut, dMidNorm);
    dOut.release();
    dMidNorm.release();
    // x_mid = x_in + o(attention(rope(q(n1)), rope(k(n1)), v(n1))), n1 = norm(x_in)
    const datt = this.linearBackward(dMid, p + "attn_output.weight", c.dim, qDim, t.lora);
    const { dq, dk, dv } = attentionBackward(gpu, datt, t.q, t.k, t.v, t.att, t.lse, this.attentionOptions());
    datt.release();
    this.ropeInPlace(dq, c.nHeads, true);
    this.ropeInPlace(dk, c.nKvHeads, true);
    const dxn = this.linearBackward(dq, p + "attn_q.weight", qDim, c.dim, t.lora);
    this.linearBackward(dk, p + "attn_k.weight", kvDim, c.dim, t.lora, dxn);
    this.linearBackward(dv, p + "attn_v.weight", kvDim, c.dim, t.lora, dxn);
    dq.release();
    dk.release();
    dv.release();
    const { dx: dInNorm } = rmsnormBackward(gpu, dxn, t.xIn, this.w(p + "attn_norm.weight"), t.rstd1, { N: rows, C: c.dim });
    dxn.release();
    const dIn = add(gpu, dMid, dInNorm);
    dMid.release();
    dInNorm.release();
    return dIn;
  }

  /** Rows per head/cross-entropy chunk so a [rows, V] logits buffer stays well under the binding limit. */
  private headChunkRows(): number {
    const V = this.llama.config.vocabSize;
    const limit = Math.min(this.gpu.info.limits.maxStorageBufferBindingSize, 64 * 2 ** 20);
    return Math.max(1, Math.min(this.rows, Math.floor(limit / (V * 4))));
  }

  /**
   * Final norm, head and cross-entropy over row chunks. Returns per-row losses [rows] and, when
   * `grad`, the gradient w.r.t. the final hidden state x.
   */
  headAndLoss(x: Tensor, grad: boolean): { loss: Tensor; dx?: Tensor } {
    const { gpu, rows } = this;
    const c = this.llama.config;
    const V = c.vocabSize;
    const head = this.llama.lw(c.tiedEmbeddings ? "token_embd.weight" : "output.weight");
    const { y: xf, rstd } = rmsnorm(gpu, x, this.w("output_norm.weight"), { N: rows, C: c.dim, eps: c.normEps, saveRstd: true });
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
      const { loss: l, dlogits } = crossEntropy(gpu, logits, tgt, { N: n, V, grad, gradScale: this.o.gradScale, inPlace: grad });
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
    let dx: Tensor | undefined;
    if (dxf) {
      dx = rmsnormBackward(gpu, dxf, x, this.w("output_norm.weight"), rstd!, { N: rows, C: c.dim }).dx;
      dxf.release();
    }
    xf.release();
    rstd!.release();
    return { loss, dx };
  }

  embed(): Tensor {
    const c = this.llama.config;
    for (let i = 0; i < this.rows; i++) {
      const id = this.batch.inputs[i];
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new PeftError("BAD_TOKEN", `input token ${id} at row ${i} is outside the vocabulary`);
    }
    const ids = this.gpu.upload(Uint32Array.from(this.batch.inputs), [this.rows], "u32", "activations");
    const x = embedding(this.gpu, this.w("token_embd.weight"), ids);
    ids.release();
    return x;
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

/**
 * Forward + backward of one micro-batch: accumulates LoRA gradients into each layer's dA/dB and
 * returns the per-row losses [B*T] (0 where the target is ignored). Caller releases the loss.
 */
export function lossAndGrads(llama: LlamaGpu, lora: TrainableLora, batch: TrainBatch, o: PassOptions): Tensor {
  checkBatch(llama, batch);
  const pass = new TrainPass(llama, lora, batch, o);
  const nL = llama.config.nLayers;
  const inputs: Tensor[] = [];
  const tapes: (BlockTape | null)[] = [];
  let x = pass.embed();
  for (let l = 0; l < nL; l++) {
    inputs.push(x);
    const { tape, xOut } = pass.blockForward(l, x);
    if (o.checkpointing) {
      pass.releaseTape(tape);
      tapes.push(null);
    } else tapes.push(tape);
    x = xOut;
  }
  const { loss, dx } = pass.headAndLoss(x, true);
  x.release();
  let d = dx!;
  for (let l = nL - 1; l >= 0; l--) {
    let tape = tapes[l];
    if (!tape) {
      // Recompute the block (same dropout seeds) for its tape; its output is not needed.
      const again = pass.blockForward(l, inputs[l]);
      again.xOut.release();
      tape = again.tape;
    }
    d = pass.blockBackward(l, tape, d);
    pass.releaseTape(tape);
    inputs[l].release();
  }
  d.release();
  return loss;
}

/** Forward only (eval): per-row losses [B*T] with or without the LoRA adapter. */
export function evalLoss(llama: LlamaGpu, lora: TrainableLora | undefined, batch: TrainBatch): Tensor {
  checkBatch(llama, batch);
  // Eval never drops: a dropout of 0 keeps the LoRA path exact.
  const pass = new TrainPass(llama, lora ? { ...lora, dropout: 0 } : undefined, batch, { seed: 0, gradScale: 1 });
  let x = pass.embed();
  for (let l = 0; l < llama.config.nLayers; l++) {
    const { tape, xOut } = pass.blockForward(l, x);
    pass.releaseTape(tape);
    x.release();
    x = xOut;
  }
  const { loss } = pass.headAndLoss(x, false);
  x.release();
  return loss;
}
