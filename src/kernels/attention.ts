/**
 * Causal scaled-dot-product attention with grouped-query heads (GQA), over a strided K/V
 * buffer so the same kernels serve training (pos0 = 0, S = T, kvStride = T) and inference
 * against a KV cache (B = 1, kvStride = context capacity, S = pos0 + T). With a sliding window W
 * (Mistral, Phi-3), the query at position p sees keys j with p - W < j <= p (transformers'
 * sliding-window mask; llama.cpp's LLAMA_SWA_TYPE_STANDARD).
 * Launchers for shaders/attention.wgsl and shaders/attention_backward.wgsl, CPU references (f64).
 */
import { f32, type Gpu, grid1d, type Tensor } from "../gpu/gpu.ts";
import { check } from "../errors.ts";

export interface AttentionOptions {
  B: number;
  T: number;
  S: number;
  kvStride?: number;
  pos0: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Sliding window: keys more than window - 1 positions behind the query are masked; 0 or absent: none. */
  window?: number;
  saveLse?: boolean;
  out?: Tensor;
}

/** The shaders keep one head's q (and dout) in workgroup memory and 4 output dims per thread. */
const MAX_HEAD_DIM = 256;

interface Dims {
  B: number;
  T: number;
  S: number;
  kvStride: number;
  pos0: number;
  Hq: number;
  Hkv: number;
  D: number;
  scale: number;
  /** 0: no window. */
  window: number;
}

function dims(o: AttentionOptions, op: string): Dims {
  const int = (v: number, name: string, min: number) =>
    check(Number.isInteger(v) && v >= min, "KERNEL_ARGS", `${op}: ${name} must be an integer >= ${min}, got ${v}`);
  int(o.B, "B", 1);
  int(o.T, "T", 1);
  int(o.S, "S", 1);
  int(o.pos0, "pos0", 0);
  int(o.nHeads, "nHeads", 1);
  int(o.nKvHeads, "nKvHeads", 1);
  int(o.headDim, "headDim", 1);
  const kvStride = o.kvStride ?? o.S;
  int(kvStride, "kvStride", 1);
  int(o.window ?? 0, "window", 0);
  check(kvStride >= o.S, "KERNEL_ARGS", `${op}: kvStride=${kvStride} must be >= S=${o.S}`);
  check(o.nHeads % o.nKvHeads === 0, "KERNEL_ARGS", `${op}: nHeads=${o.nHeads} is not a multiple of nKvHeads=${o.nKvHeads}`);
  check(o.headDim <= MAX_HEAD_DIM, "KERNEL_ARGS", `${op}: headDim=${o.headDim} is over the supported ${MAX_HEAD_DIM}`);
  return {
    B: o.B, T: o.T, S: o.S, kvStride, pos0: o.pos0, Hq: o.nHeads, Hkv: o.nKvHeads, D: o.headDim, scale: 1 / Math.sqrt(o.headDim), window: o.window ?? 0,
  };
}

function checkTensor(t: Tensor, n: number, what: string): void {
  check(t.dtype === "f32", "KERNEL_ARGS", `${what}: expected an f32 tensor, got ${t.dtype}`);
  check(t.size >= n, "KERNEL_ARGS", `${what}: tensor [${t.shape}] has ${t.size} elements, needs ${n}`);
}

function checkInputs(d: Dims, q: Tensor, k: Tensor, v: Tensor, op: string): void {
  checkTensor(q, d.B * d.T * d.Hq * d.D, `${op} q`);
  // The last sequence only needs its first S rows (a KV cache may be exactly that long).
  const kvNeed = ((d.B - 1) * d.kvStride + d.S) * d.Hkv * d.D;
  checkTensor(k, kvNeed, `${op} k`);
  checkTensor(v, kvNeed, `${op} v`);
}

const params = (d: Dims) => [d.B, d.T, d.S, d.kvStride, d.pos0, d.Hq, d.Hkv, d.D, f32(d.scale), d.window];

/** Keys [first, last) the query at row t sees: causal, and within the sliding window when there is one. */
export function visibleKeys(d: { pos0: number; S: number; window: number }, t: number): { first: number; last: number } {
  const last = Math.min(d.pos0 + t + 1, d.S);
  return { first: d.window > 0 ? Math.max(0, d.pos0 + t + 1 - d.window) : 0, last };
}

export function attention(gpu: Gpu, q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions): { out: Tensor; lse?: Tensor } {
  const d = dims(o, "attention");
  checkInputs(d, q, k, v, "attention");
  const rows = d.B * d.T;
  if (o.out) {
    checkTensor(o.out, rows * d.Hq * d.D, "attention out");
    check(o.out !== q && o.out !== k && o.out !== v, "KERNEL_ARGS", "attention: out must not alias q, k or v");
  }
  const out = o.out ?? gpu.tensor([rows, d.Hq * d.D]);
  // lse is bound on every dispatch; a one-element placeholder (never written) when not saved.
  const lse = o.saveLse ? gpu.tensor([rows * d.Hq]) : gpu.tensor([1]);
  gpu.dispatch("attention", "main", {
    bindings: { q, k, v, out, lse },
    params: [...params(d), o.saveLse ? 1 : 0],
    workgroups: grid1d(rows * d.Hq, 1),
  });
  if (o.saveLse) return { out, lse };
  lse.release();
  return { out };
}

/**
 * Gradients of `attention` given dout and the forward's out and lse (saveLse: true).
 * dk/dv are [B*kvStride, Hkv*D], summed over the query heads sharing each kv head; keys no
 * query sees (rows >= S included) get exactly zero. Deterministic: no atomics.
 */
export function attentionBackward(
  gpu: Gpu,
  dout: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  o: AttentionOptions,
): { dq: Tensor; dk: Tensor; dv: Tensor } {
  const d = dims(o, "attentionBackward");
  checkInputs(d, q, k, v, "attentionBackward");
  const rows = d.B * d.T, qw = d.Hq * d.D, kvRows = d.B * d.kvStride, kvw = d.Hkv * d.D;
  checkTensor(dout, rows * qw, "attentionBackward dout");
  checkTensor(out, rows * qw, "attentionBackward out");
  checkTensor(lse, rows * d.Hq, "attentionBackward lse (run attention with saveLse: true)");
  const delta = gpu.tensor([rows * d.Hq]);
  const dq = gpu.tensor([rows, qw], "f32", "activations");
  const dk = gpu.tensor([kvRows, kvw], "f32", "activations");
  const dv = gpu.tensor([kvRows, kvw], "f32", "activations");
  const bindings = { dout, q, k, v, out, lse, delta, dq, dk, dv };
  const p = params(d);
  gpu.dispatch("attention_backward", "delta_rows", { bindings, params: p, workgroups: grid1d(rows * d.Hq, 64) });
  gpu.dispatch("attention_backward", "dq_rows", { bindings, params: p, workgroups: grid1d(rows * d.Hq, 1) });
  gpu.dispatch("attention_backward", "dkv_rows", { bindings, params: p, workgroups: grid1d(kvRows * d.Hkv, 1) });
  delta.release();
  return { dq, dk, dv };
}

// ------------------------------------------------------------------ CPU references (f64)

export interface AttentionHost {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

/** Scaled scores and softmax of query (row, h) over its visible keys, in f64. */
function softmaxRow(x: AttentionHost, d: Dims, b: number, t: number, h: number): { first: number; last: number; p: Float64Array; lse: number } {
  const { T, Hq, Hkv, D, kvStride, scale } = d;
  const g = Math.floor(h / (Hq / Hkv));
  const { first, last } = visibleKeys(d, t);
  // s and p are indexed by key j; entries before `first` stay unused.
  const s = new Float64Array(last);
  let m = -Infinity;
  for (let j = first; j < last; j++) {
    let dot = 0;
    for (let e = 0; e < D; e++) dot += x.q[(b * T + t) * Hq * D + h * D + e] * x.k[(b * kvStride + j) * Hkv * D + g * D + e];
    s[j] = dot * scale;
    m = Math.max(m, s[j]);
  }
  let sum = 0;
  for (let j = first; j < last; j++) sum += Math.exp(s[j] - m);
  const p = s.map((v, j) => j < first ? 0 : Math.exp(v - m) / sum);
  return { first, last, p, lse: m + Math.log(sum) };
}

export function attentionReference(x: AttentionHost, o: AttentionOptions): { out: Float32Array; lse: Float32Array } {
  const d = dims(o, "attentionReference");
  const { B, T, Hq, Hkv, D, kvStride } = d;
  const out = new Float32Array(B * T * Hq * D), lse = new Float32Array(B * T * Hq);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < Hq; h++) {
        const g = Math.floor(h / (Hq / Hkv));
        const r = softmaxRow(x, d, b, t, h);
        lse[(b * T + t) * Hq + h] = r.lse;
        for (let e = 0; e < D; e++) {
          let a = 0;
          for (let j = r.first; j < r.last; j++) a += r.p[j] * x.v[(b * kvStride + j) * Hkv * D + g * D + e];
          out[(b * T + t) * Hq * D + h * D + e] = a;
        }
      }
    }
  }
  return { out, lse };
}

/** f64 gradients of sum(out * dout) with respect to q, k, v (dk/dv laid out [B*kvStride, Hkv*D]). */
export function attentionBackwardReference(
  x: AttentionHost,
  dout: Float32Array,
  o: AttentionOptions,
): { dq: Float32Array; dk: Float32Array; dv: Float32Array } {
  const d = dims(o, "attentionBackwardReference");
  const { B, T, Hq, Hkv, D, kvStride, scale } = d;
  const dq = new Float64Array(B * T * Hq * D);
  const dk = new Float64Array(B * kvStride * Hkv * D), dv = new Float64Array(B * kvStride * Hkv * D);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < Hq; h++) {
        const g = Math.floor(h / (Hq / Hkv));
        const qo = (b * T + t) * Hq * D + h * D;
        const r = softmaxRow(x, d, b, t, h);
        const dp = new Float64Array(r.last);
        let delta = 0;
        for (let j = r.first; j < r.last; j++) {
          const ko = (b * kvStride + j) * Hkv * D + g * D;
          for (let e = 0; e < D; e++) dp[j] += dout[qo + e] * x.v[ko + e];
          delta += r.p[j] * dp[j]; // = dout . out
        }
        for (let j = r.first; j < r.last; j++) {
          const ko = (b * kvStride + j) * Hkv * D + g * D;
          const ds = r.p[j] * (dp[j] - delta) * scale;
          for (let e = 0; e < D; e++) {
            dq[qo + e] += ds * x.k[ko + e];
            dk[ko + e] += ds * x.q[qo + e];
            dv[ko + e] += r.p[j] * dout[qo + e];
          }
        }
      }
    }
  }
  return { dq: Float32Array.from(dq), dk: Float32Array.from(dk), dv: Float32Array.from(dv) };
}
