/**
 * The CPU backend of the model's ops (backend.ts): the kernels' CPU references (f64
 * accumulation, f32 storage) on host arrays. Running the one block on it gives the reference
 * model the GPU is tested against, and the hooks' CPU references come with it.
 */
import { PeftError } from "../errors.ts";
import { attentionBackwardReference, attentionReference } from "../kernels/attention.ts";
import { addColsReference, colSumReference, divReference, mulColsReference, mulRowsReference, rowNormsReference } from "../kernels/broadcast.ts";
import { dropoutReference } from "../kernels/elementwise.ts";
import { embeddingBackwardReference, embeddingReference } from "../kernels/embedding.ts";
import { matmulReference } from "../kernels/matmul.ts";
import { rmsnormReference } from "../kernels/rmsnorm.ts";
import { ropeReference } from "../kernels/rope.ts";
import { swigluBackwardReference, swigluReference } from "../kernels/swiglu.ts";
import { type Activation, type AttentionArgs, type Backend, type Block, type MatmulArgs, type RopeArgs, sizeOf } from "./backend.ts";
import { activationBackwardReference, activationReference } from "../kernels/activation.ts";
import { copyBlockReference } from "../kernels/copy_block.ts";
import { type BottleneckArgs, bottleneckForwardReference, type BottleneckWeights } from "../kernels/bottleneck.ts";

export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

export const host = (shape: number[], data: Float32Array = new Float32Array(sizeOf(shape))): HostTensor => {
  if (data.length !== sizeOf(shape)) throw new PeftError("BAD_SHAPE", `host tensor: ${data.length} values for shape [${shape}]`);
  return { shape: [...shape], data };
};

export class CpuBackend implements Backend<HostTensor> {
  readonly kind = "cpu" as const;
  /** Frozen weights by GGUF name with their shapes ([out, in] for linears). */
  constructor(readonly weights: Map<string, HostTensor> = new Map()) {}

  shape(t: HostTensor): number[] {
    return t.shape;
  }
  release(): void {}
  empty(shape: number[]): HostTensor {
    return host(shape);
  }
  zeros(shape: number[]): HostTensor {
    return host(shape);
  }
  copy(t: HostTensor): HostTensor {
    return host(t.shape, t.data.slice());
  }
  copyInto(dst: HostTensor, src: HostTensor): void {
    dst.data.set(src.data);
  }
  sliceRows(t: HostTensor, row0: number, rows: number): HostTensor {
    const C = t.shape[t.shape.length - 1];
    return host([rows, C], t.data.slice(row0 * C, (row0 + rows) * C));
  }

  weight(name: string): HostTensor {
    const w = this.weights.get(name);
    if (!w) throw new PeftError("MODEL_MISSING_TENSOR", `cpu backend: no weight ${name}`);
    return w;
  }
  ids(ids: ArrayLike<number>): HostTensor {
    return host([ids.length], Float32Array.from(ids));
  }
  embedding(table: HostTensor, ids: HostTensor): HostTensor {
    const [V, C] = table.shape;
    return host([ids.data.length, C], embeddingReference(table.data, Uint32Array.from(ids.data), V, C));
  }
  baseEmbedding(name: string, ids: HostTensor): HostTensor {
    return this.embedding(this.weight(name), ids);
  }
  embeddingBackward(dy: HostTensor, ids: HostTensor, into: HostTensor): void {
    const [V, C] = into.shape;
    into.data.set(embeddingBackwardReference(dy.data, Uint32Array.from(ids.data), V, C, into.data));
  }

  baseLinear(x: HostTensor, name: string, rows: number, into?: HostTensor): HostTensor {
    const W = this.weight(name);
    const [out, inn] = W.shape;
    return this.matmul(x, W, { M: rows, N: out, K: inn, transB: true }, into);
  }
  baseLinearBackward(dy: HostTensor, name: string, rows: number, into?: HostTensor): HostTensor {
    const W = this.weight(name);
    const [out, inn] = W.shape;
    return this.matmul(dy, W, { M: rows, N: inn, K: out }, into);
  }
  baseLinearIsDense(): boolean {
    return true;
  }
  baseLinearFormat(): string {
    return "f32";
  }
  baseLinearDense(name: string): HostTensor {
    return this.copy(this.weight(name));
  }
  baseLinearShape(name: string): [number, number] {
    const [out, inn] = this.weight(name).shape;
    return [out, inn];
  }

  matmul(a: HostTensor, b: HostTensor, o: MatmulArgs, into?: HostTensor): HostTensor {
    const r = matmulReference(a.data, b.data, { ...o, accumulate: !!into }, into?.data);
    if (into) {
      into.data.set(r);
      return into;
    }
    return host([o.M, o.N], r);
  }
  add(a: HostTensor, b: HostTensor, alpha = 1): HostTensor {
    return host(a.shape, a.data.map((v, i) => v + alpha * b.data[i]));
  }
  addInto(acc: HostTensor, b: HostTensor, alpha = 1): void {
    for (let i = 0; i < acc.data.length; i++) acc.data[i] += alpha * b.data[i];
  }
  scale(x: HostTensor, s: number): HostTensor {
    return host(x.shape, x.data.map((v) => s * v));
  }
  mul(a: HostTensor, b: HostTensor): HostTensor {
    return host(a.shape, a.data.map((v, i) => v * b.data[i]));
  }
  dropout(x: HostTensor, p: number, seed: number): HostTensor {
    return host(x.shape, dropoutReference(x.data, p, seed));
  }
  mulCols(x: HostTensor, v: HostTensor, rows: number, cols: number): HostTensor {
    return host(x.shape, mulColsReference(x.data, v.data, rows, cols));
  }
  mulRows(x: HostTensor, v: HostTensor, rows: number, cols: number): HostTensor {
    return host(x.shape, mulRowsReference(x.data, v.data, rows, cols));
  }
  addCols(x: HostTensor, v: HostTensor, rows: number, cols: number): HostTensor {
    return host(x.shape, addColsReference(x.data, v.data, rows, cols));
  }
  colSum(a: HostTensor, b: HostTensor | undefined, rows: number, cols: number, into?: HostTensor): HostTensor {
    const r = colSumReference(a.data, b?.data, rows, cols, into?.data);
    return into ?? host([cols], r);
  }
  rowNorms(x: HostTensor, rows: number, cols: number): HostTensor {
    return host([rows], rowNormsReference(x.data, rows, cols));
  }
  div(a: HostTensor, b: HostTensor): HostTensor {
    return host(a.shape, divReference(a.data, b.data));
  }

  copyBlock(src: HostTensor, dst: HostTensor, b: Block): void {
    copyBlockReference(src.data, dst.data, b);
  }
  activation(x: HostTensor, fn: Activation): HostTensor {
    return host(x.shape, activationReference(x.data, fn));
  }
  activationBackward(dy: HostTensor, x: HostTensor, fn: Activation): HostTensor {
    return host(x.shape, activationBackwardReference(dy.data, x.data, fn));
  }

  bottleneck(z: HostTensor, r: HostTensor, w: BottleneckWeights<HostTensor>, o: BottleneckArgs, stream?: HostTensor): HostTensor {
    return host([o.N, o.D], bottleneckForwardReference(z.data, r.data, { wd: w.wd.data, bd: w.bd.data, wu: w.wu.data, bu: w.bu.data }, o, stream?.data));
  }


  rmsnorm(x: HostTensor, w: HostTensor, N: number, C: number, eps: number): { y: HostTensor; rstd: HostTensor } {
    const r = rmsnormReference(x.data, w.data, N, C, eps);
    return { y: host([N, C], r.y), rstd: host([N], r.rstd) };
  }
  rmsnormBackward(dy: HostTensor, x: HostTensor, w: HostTensor, rstd: HostTensor, N: number, C: number, wantDw: boolean) {
    const dx = new Float32Array(N * C), dw = new Float64Array(C);
    for (let r = 0; r < N; r++) {
      const rs = rstd.data[r];
      let dot = 0;
      for (let c = 0; c < C; c++) dot += w.data[c] * dy.data[r * C + c] * x.data[r * C + c];
      for (let c = 0; c < C; c++) {
        const i = r * C + c;
        dx[i] = rs * w.data[c] * dy.data[i] - x.data[i] * rs * rs * rs * dot / C;
        dw[c] += dy.data[i] * x.data[i] * rs;
      }
    }
    return { dx: host([N, C], dx), dw: wantDw ? host([C], Float32Array.from(dw)) : undefined };
  }
  rope(x: HostTensor, o: RopeArgs, inPlace: boolean): HostTensor {
    const y = ropeReference(x.data, o);
    if (inPlace) {
      x.data.set(y);
      return x;
    }
    return host(x.shape, y);
  }
  attention(q: HostTensor, k: HostTensor, v: HostTensor, o: AttentionArgs): { out: HostTensor; lse: HostTensor } {
    const r = attentionReference({ q: q.data, k: k.data, v: v.data }, o);
    return { out: host([o.B * o.T, o.nHeads * o.headDim], r.out), lse: host([o.B * o.T * o.nHeads], r.lse) };
  }
  attentionBackward(dout: HostTensor, q: HostTensor, k: HostTensor, v: HostTensor, _out: HostTensor, _lse: HostTensor, o: AttentionArgs) {
    const r = attentionBackwardReference({ q: q.data, k: k.data, v: v.data }, dout.data, o);
    return { dq: host(q.shape, r.dq), dk: host(k.shape, r.dk.subarray(0, sizeOf(k.shape))), dv: host(v.shape, r.dv.subarray(0, sizeOf(v.shape))) };
  }
  swiglu(gate: HostTensor, up: HostTensor): HostTensor {
    return host(gate.shape, swigluReference(gate.data, up.data));
  }
  swigluBackward(dh: HostTensor, gate: HostTensor, up: HostTensor) {
    const r = swigluBackwardReference(dh.data, gate.data, up.data);
    return { dgate: host(gate.shape, r.dgate), dup: host(up.shape, r.dup) };
  }
}
