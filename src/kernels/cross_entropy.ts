/**
 * Fused softmax cross-entropy over the vocabulary (shaders/cross_entropy.wgsl): per-row loss and,
 * optionally, the logits gradient in the same pass, written over the logits when inPlace (the
 * [N,V] logits are the largest activation of a small model).
 */
import { check } from "../errors.ts";
import { f32, type Gpu, grid1d, type Tensor, UNUSED } from "../gpu/gpu.ts";

export interface CrossEntropyOptions {
  N: number;
  V: number;
  /** Also compute dlogits = gradScale * (softmax - onehot). */
  grad?: boolean;
  /** Usually 1 / (number of non-ignored targets) for a mean loss. */
  gradScale?: number;
  /** Write dlogits over logits. */
  inPlace?: boolean;
}

/** Targets below 0 (e.g. -100, PyTorch's ignore_index) give loss 0 and gradient 0; a target >= V gives loss NaN. */
export function crossEntropy(gpu: Gpu, logits: Tensor, targets: Tensor, o: CrossEntropyOptions): { loss: Tensor; dlogits?: Tensor } {
  const { N, V } = o;
  check(Number.isInteger(N) && N > 0 && Number.isInteger(V) && V > 0, "CROSS_ENTROPY_SHAPE", `crossEntropy: N = ${N}, V = ${V} must be positive integers`);
  check(logits.dtype === "f32" && logits.size >= N * V, "CROSS_ENTROPY_SHAPE", `crossEntropy: logits [${logits.shape}] ${logits.dtype} must be f32 with N*V = ${N}*${V} elements`);
  check(targets.dtype === "i32" && targets.size >= N, "CROSS_ENTROPY_SHAPE", `crossEntropy: targets [${targets.shape}] ${targets.dtype} must be i32 [${N}]`);
  check(!o.inPlace || o.grad, "CROSS_ENTROPY_ARGS", "crossEntropy: inPlace only makes sense with grad: true");
  check(o.gradScale === undefined || Number.isFinite(o.gradScale), "CROSS_ENTROPY_ARGS", `crossEntropy: gradScale = ${o.gradScale} must be finite`);
  const loss = gpu.tensor([N]);
  const dlogits = o.grad ? (o.inPlace ? logits : gpu.tensor([N, V])) : undefined;
  gpu.dispatch("cross_entropy", "main", {
    bindings: { x: logits, dx: dlogits && !o.inPlace ? dlogits : UNUSED, targets, loss },
    params: [N, V, o.grad ? (o.inPlace ? 2 : 1) : 0, f32(o.gradScale ?? 1)],
    workgroups: grid1d(N, 1),
  });
  return dlogits ? { loss, dlogits } : { loss };
}

/** CPU reference in f64: per-row loss and dlogits (gradScale applied). */
export function crossEntropyReference(
  logits: Float32Array,
  targets: Int32Array,
  o: { N: number; V: number; gradScale?: number },
): { loss: Float32Array; dlogits: Float32Array } {
  const { N, V } = o, gs = o.gradScale ?? 1;
  const loss = new Float32Array(N), dlogits = new Float32Array(N * V);
  for (let n = 0; n < N; n++) {
    const t = targets[n];
    if (t < 0) continue;
    const row = logits.subarray(n * V, (n + 1) * V);
    let mx = -Infinity;
    for (let j = 0; j < V; j++) mx = Math.max(mx, row[j]);
    let se = 0;
    for (let j = 0; j < V; j++) se += Math.exp(row[j] - mx);
    loss[n] = t < V ? Math.log(se) + mx - row[t] : NaN;
    for (let j = 0; j < V; j++) dlogits[n * V + j] = gs * (Math.exp(row[j] - mx) / se - (j === t ? 1 : 0));
  }
  return { loss, dlogits };
}
