/**
 * The GPU backend of the model's ops (backend.ts): each op is one kernel launcher of src/kernels.
 * Frozen base weights come from a `BaseWeights` (the loaded model): linears (and the embedding
 * table) may be f32, f16 or kept quantized (4-bit, or a GGUF block format) and are multiplied and
 * looked up through `linearMatmul` / the weight's own kernels (dequantized on the fly, never an
 * f32 copy).
 */
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import { attention, attentionBackward } from "../kernels/attention.ts";
import { addCols, colSum, div, mulCols, mulRows, rowNorms } from "../kernels/broadcast.ts";
import { toF32 } from "../kernels/convert_f16.ts";
import { PeftError } from "../errors.ts";
import { add, axpy, dropout, mul, scale } from "../kernels/elementwise.ts";
import { embedding, embeddingBackward } from "../kernels/embedding.ts";
import { matmul } from "../kernels/matmul.ts";
import { rmsnorm, rmsnormBackward } from "../kernels/rmsnorm.ts";
import { rope } from "../kernels/rope.ts";
import { swiglu, swigluBackward } from "../kernels/swiglu.ts";
import type { Activation, AttentionArgs, Backend, Block, MatmulArgs, RopeArgs } from "./backend.ts";
import { activation, activationBackward } from "../kernels/activation.ts";
import { type BottleneckArgs, bottleneckForward, type BottleneckWeights } from "../kernels/bottleneck.ts";
import { copyBlock } from "../kernels/copy_block.ts";
import { type ComputeDtype, isQuantized, type LinearWeight, linearMatmul, linearMatmulBackward, weightFormat, weightShape } from "./quantized.ts";

/** What the backend needs of a loaded model: its frozen weights by GGUF name. */
export interface BaseWeights {
  readonly gpu: Gpu;
  readonly computeDtype: ComputeDtype;
  /** An f32 weight (norms, embeddings). */
  w(name: string): Tensor;
  /** A linear weight or the embedding table (f32, f16 or quantized). */
  lw(name: string): LinearWeight;
}

export class GpuBackend implements Backend<Tensor> {
  readonly kind = "gpu" as const;
  readonly gpu: Gpu;
  constructor(readonly base: BaseWeights) {
    this.gpu = base.gpu;
  }

  shape(t: Tensor): number[] {
    return t.shape;
  }
  release(t: Tensor): void {
    t.release();
  }
  empty(shape: number[]): Tensor {
    return this.gpu.tensor(shape);
  }
  zeros(shape: number[]): Tensor {
    return this.gpu.zeros(shape);
  }
  copy(t: Tensor): Tensor {
    const c = this.gpu.tensor(t.shape, t.dtype);
    this.gpu.copy(t, c);
    return c;
  }
  copyInto(dst: Tensor, src: Tensor): void {
    this.gpu.copy(src, dst);
  }
  sliceRows(t: Tensor, row0: number, rows: number): Tensor {
    const C = t.shape[t.shape.length - 1];
    const out = this.gpu.tensor([rows, C]);
    this.gpu.copy(t, out, rows * C * 4, row0 * C * 4, 0);
    return out;
  }

  weight(name: string): Tensor {
    return this.base.w(name);
  }
  ids(ids: ArrayLike<number>): Tensor {
    return this.gpu.upload(Uint32Array.from(ids), [ids.length], "u32", "activations");
  }
  embedding(table: Tensor, ids: Tensor): Tensor {
    return embedding(this.gpu, table, ids);
  }
  baseEmbedding(name: string, ids: Tensor): Tensor {
    const w = this.base.lw(name);
    if (!isQuantized(w)) return embedding(this.gpu, w, ids);
    if (!w.embedding) throw new PeftError("UNSUPPORTED", `${name} is stored ${w.format}, which has no row lookup`);
    return w.embedding(this.gpu, ids);
  }
  embeddingBackward(dy: Tensor, ids: Tensor, into: Tensor): void {
    embeddingBackward(this.gpu, dy, ids, into.shape[0], into);
  }

  baseLinear(x: Tensor, name: string, rows: number, into?: Tensor): Tensor {
    return linearMatmul(this.gpu, x, this.base.lw(name), { M: rows, accumulate: !!into, out: into, compute: this.base.computeDtype });
  }
  baseLinearBackward(dy: Tensor, name: string, rows: number, into?: Tensor): Tensor {
    return linearMatmulBackward(this.gpu, dy, this.base.lw(name), { M: rows, accumulate: !!into, out: into, compute: this.base.computeDtype });
  }
  baseLinearIsDense(name: string): boolean {
    return !isQuantized(this.base.lw(name));
  }
  baseLinearFormat(name: string): string {
    return weightFormat(this.base.lw(name));
  }
  baseLinearDense(name: string): Tensor {
    const w = this.base.lw(name);
    if (isQuantized(w)) {
      throw new PeftError("UNSUPPORTED", `${name} is kept quantized (${w.format}): this operation needs it dense (f32 or f16)`);
    }
    return w.dtype === "f16" ? toF32(this.gpu, w) : this.copy(w);
  }
  baseLinearShape(name: string): [number, number] {
    return weightShape(this.base.lw(name));
  }

  matmul(a: Tensor, b: Tensor, o: MatmulArgs, into?: Tensor): Tensor {
    return matmul(this.gpu, a, b, { ...o, accumulate: !!into, out: into });
  }
  add(a: Tensor, b: Tensor, alpha = 1): Tensor {
    if (alpha === 1) return add(this.gpu, a, b);
    const out = this.copy(a);
    axpy(this.gpu, out, b, alpha);
    return out;
  }
  addInto(acc: Tensor, b: Tensor, alpha = 1): void {
    axpy(this.gpu, acc, b, alpha);
  }
  scale(x: Tensor, s: number): Tensor {
    return scale(this.gpu, x, s);
  }
  mul(a: Tensor, b: Tensor): Tensor {
    return mul(this.gpu, a, b);
  }
  dropout(x: Tensor, p: number, seed: number): Tensor {
    return dropout(this.gpu, x, p, seed);
  }
  mulCols(x: Tensor, v: Tensor, rows: number, cols: number): Tensor {
    return mulCols(this.gpu, x, v, rows, cols);
  }
  mulRows(x: Tensor, v: Tensor, rows: number, cols: number): Tensor {
    return mulRows(this.gpu, x, v, rows, cols);
  }
  addCols(x: Tensor, v: Tensor, rows: number, cols: number): Tensor {
    return addCols(this.gpu, x, v, rows, cols);
  }
  colSum(a: Tensor, b: Tensor | undefined, rows: number, cols: number, into?: Tensor): Tensor {
    return colSum(this.gpu, a, b, rows, cols, into);
  }
  rowNorms(x: Tensor, rows: number, cols: number): Tensor {
    return rowNorms(this.gpu, x, rows, cols);
  }
  div(a: Tensor, b: Tensor): Tensor {
    return div(this.gpu, a, b);
  }

  copyBlock(src: Tensor, dst: Tensor, b: Block): void {
    copyBlock(this.gpu, src, dst, b);
  }
  activation(x: Tensor, fn: Activation): Tensor {
    return activation(this.gpu, x, fn);
  }
  activationBackward(dy: Tensor, x: Tensor, fn: Activation): Tensor {
    return activationBackward(this.gpu, dy, x, fn);
  }
  bottleneck(z: Tensor, r: Tensor, w: BottleneckWeights<Tensor>, o: BottleneckArgs, stream?: Tensor): Tensor {
    return bottleneckForward(this.gpu, z, r, w, o, stream);
  }

  rmsnorm(x: Tensor, w: Tensor, N: number, C: number, eps: number): { y: Tensor; rstd: Tensor } {
    const r = rmsnorm(this.gpu, x, w, { N, C, eps, saveRstd: true });
    return { y: r.y, rstd: r.rstd! };
  }
  rmsnormBackward(dy: Tensor, x: Tensor, w: Tensor, rstd: Tensor, N: number, C: number, wantDw: boolean): { dx: Tensor; dw?: Tensor } {
    return rmsnormBackward(this.gpu, dy, x, w, rstd, { N, C, wantDw });
  }
  rope(x: Tensor, o: RopeArgs, inPlace: boolean): Tensor {
    return rope(this.gpu, x, { ...o, out: inPlace ? x : undefined });
  }
  attention(q: Tensor, k: Tensor, v: Tensor, o: AttentionArgs): { out: Tensor; lse: Tensor } {
    const r = attention(this.gpu, q, k, v, { ...o, saveLse: true });
    return { out: r.out, lse: r.lse! };
  }
  attentionBackward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, o: AttentionArgs) {
    return attentionBackward(this.gpu, dout, q, k, v, out, lse, { ...o, saveLse: true });
  }
  swiglu(gate: Tensor, up: Tensor): Tensor {
    return swiglu(this.gpu, gate, up);
  }
  swigluBackward(dh: Tensor, gate: Tensor, up: Tensor): { dgate: Tensor; dup: Tensor } {
    return swigluBackward(this.gpu, dh, gate, up);
  }
}
