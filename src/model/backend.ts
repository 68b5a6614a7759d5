/**
 * The tensor operations the model is written in, once for two backends:
 *  - the GPU backend (src/model/gpu_backend.ts): WGSL kernels on `Tensor`s;
 *  - the CPU backend (src/model/cpu_backend.ts): the kernels' f64 CPU references on host arrays,
 *    which makes the same block code the CPU reference model.
 * The autodiff graph (graph.ts) records these ops and writes every backward in terms of them,
 * so a hook written once has a forward and a backward on both backends.
 *
 * Conventions: tensors are row-major [rows, cols]; an op returns a new tensor unless it takes
 * `into` (accumulate: into += result, returned). Frozen base weights are named by their GGUF
 * tensor name and resolved by the backend (f32, f16 or 4-bit on the GPU; f32 on the host).
 */

import type { Activation } from "../kernels/activation.ts";
import type { MatmulOptions } from "../kernels/matmul.ts";
import type { RopeOptions } from "../kernels/rope.ts";
import type { Block } from "../kernels/copy_block.ts";
import type { BottleneckArgs, BottleneckWeights } from "../kernels/bottleneck.ts";

export type { Activation, Block };

/** A matmul's shape and transposes (the kernel's own options, less its buffers and offsets). */
export type MatmulArgs = Pick<MatmulOptions, "M" | "N" | "K" | "transA" | "transB" | "alpha">;

/** Rope over [N, nHeads*headDim] rows in sequences of T from pos0 (the kernel's options, less `out`). */
export type RopeArgs = Omit<RopeOptions, "out">;

export interface AttentionArgs {
  /** Sequences. */
  B: number;
  /** Query rows per sequence. */
  T: number;
  /** Key rows per sequence visible in total (pos0 + T for causal attention). */
  S: number;
  /** Rows between sequences in k/v (>= S). */
  kvStride: number;
  /** Position of the first query row (queries see keys 0..pos0 + t). */
  pos0: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Sliding window (keys within window - 1 positions of the query); 0 or absent: none. */
  window?: number;
}

export interface Backend<T> {
  readonly kind: "gpu" | "cpu";
  shape(t: T): number[];
  release(t: T): void;
  /** A tensor whose contents are undefined (to be written whole). */
  empty(shape: number[]): T;
  /** A zero-filled tensor. */
  zeros(shape: number[]): T;
  /** A copy of t. */
  copy(t: T): T;
  /** dst's values = src's (same size). */
  copyInto(dst: T, src: T): void;
  /** Rows [row0, row0 + rows) of a [R, C] tensor, as a new [rows, C] tensor. */
  sliceRows(t: T, row0: number, rows: number): T;

  /** False when a base linear weight is kept quantized (4-bit or a ggml block format: no dense copy on the device). */
  baseLinearIsDense(weightName: string): boolean;
  /** How a base linear weight is stored: "f32", "f16", "nf4", "fp4" or a ggml type name ("Q4_K", ...). */
  baseLinearFormat(weightName: string): string;
  /** A base linear weight as a new f32 [out, in] tensor (widened from f16; quantized is refused). */
  baseLinearDense(weightName: string): T;
  /** A frozen base weight that is not a linear (norm weights; the embedding table when stored f32). */
  weight(name: string): T;
  /** Token ids as a tensor (u32 on the GPU). */
  ids(ids: ArrayLike<number>): T;
  /** Rows `ids` of a frozen base table [V, C] (f32 or kept quantized) as a new [ids, C] tensor. */
  baseEmbedding(tableName: string, ids: T): T;
  /** out[n] = table[ids[n]]. */
  embedding(table: T, ids: T): T;
  /** table grad: into[v] += Σ_{n: ids[n] = v} dy[n]. */
  embeddingBackward(dy: T, ids: T, into: T): void;

  /** y = x·Wᵀ for a frozen base linear weight (f32 / f16 / 4-bit); into: into += y. */
  baseLinear(x: T, weightName: string, rows: number, into?: T): T;
  /** dx = dy·W (into += when given). */
  baseLinearBackward(dy: T, weightName: string, rows: number, into?: T): T;
  /** [out, in] of a base linear weight. */
  baseLinearShape(weightName: string): [number, number];

  /** alpha·op(a)·op(b); into: into += result. */
  matmul(a: T, b: T, o: MatmulArgs, into?: T): T;
  /** a + alpha·b, new tensor. */
  add(a: T, b: T, alpha?: number): T;
  /** acc += alpha·b (in place). */
  addInto(acc: T, b: T, alpha?: number): void;
  /** s·x, new tensor. */
  scale(x: T, s: number): T;
  /** Elementwise a·b, new tensor. */
  mul(a: T, b: T): T;
  /** x·keep/(1-p) with the counter-based mask of `seed` (the same call on dy is the backward). */
  dropout(x: T, p: number, seed: number): T;

  /** y[r, c] = x[r, c]·v[c] for x [rows, cols], v [cols]. */
  mulCols(x: T, v: T, rows: number, cols: number): T;
  /** y[r, c] = x[r, c]·v[r] for v [rows]. */
  mulRows(x: T, v: T, rows: number, cols: number): T;
  /** y[r, c] = x[r, c] + v[c]. */
  addCols(x: T, v: T, rows: number, cols: number): T;
  /** s[c] = Σ_r a[r, c]·b[r, c] (b absent: Σ_r a[r, c]); into: into += s. */
  colSum(a: T, b: T | undefined, rows: number, cols: number, into?: T): T;
  /** n[r] = ||x[r, :]||₂ of a [rows, cols] tensor. */
  rowNorms(x: T, rows: number, cols: number): T;
  /** Elementwise a / b, new tensor. */
  div(a: T, b: T): T;

  /** A block of rows × cols from src to dst (src/kernels/copy_block.ts), written or accumulated. */
  copyBlock(src: T, dst: T, b: Block): void;
  /** Pointwise nonlinearity and its backward (dx = dy·f'(x)). */
  activation(x: T, fn: Activation): T;
  activationBackward(dy: T, x: T, fn: Activation): T;
  /**
   * A bottleneck adapter module in one step, forward only: r + s·(Wu·f(Wd·z + bd) + bu), plus
   * `stream` when given (src/kernels/bottleneck.ts).
   */
  bottleneck(z: T, r: T, w: BottleneckWeights<T>, o: BottleneckArgs, stream?: T): T;

  rmsnorm(x: T, w: T, N: number, C: number, eps: number): { y: T; rstd: T };
  rmsnormBackward(dy: T, x: T, w: T, rstd: T, N: number, C: number, wantDw: boolean): { dx: T; dw?: T };
  /** RoPE of x (or its inverse); `inPlace` may rotate x itself. */
  rope(x: T, o: RopeArgs, inPlace: boolean): T;
  attention(q: T, k: T, v: T, o: AttentionArgs): { out: T; lse: T };
  attentionBackward(dout: T, q: T, k: T, v: T, out: T, lse: T, o: AttentionArgs): { dq: T; dk: T; dv: T };
  swiglu(gate: T, up: T): T;
  swigluBackward(dh: T, gate: T, up: T): { dgate: T; dup: T };
}

export const rowsOf = (shape: number[]) => shape.length === 1 ? 1 : shape.slice(0, -1).reduce((a, b) => a * b, 1);
export const colsOf = (shape: number[]) => shape[shape.length - 1];
export const sizeOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
