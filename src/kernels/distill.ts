/**
 * The distillation loss (shaders/distill.wgsl): TRL's generalized Jensen-Shannon divergence
 * between the student's and the teacher's next-token distributions at a temperature, per row,
 * and its gradient w.r.t. the student's logits in the same pass (written, written over the
 * logits, or added to a buffer that already holds another loss's gradient).
 *
 * beta as TRL's GKDTrainer defines it: 0 = forward KL(teacher ‖ student), 1 = reverse
 * KL(student ‖ teacher), otherwise β·KL(T ‖ M) + (1-β)·KL(S ‖ M) with M = β·T + (1-β)·S.
 * The temperature divides both logits; the loss is not rescaled by T² (TRL does not).
 */
import { check } from "../errors.ts";
import { f32, type Gpu, grid1d, type Tensor, UNUSED } from "../gpu/gpu.ts";

export interface JsdOptions {
  N: number;
  V: number;
  /** In [0, 1]: 0 forward KL, 1 reverse KL, 0.5 the symmetric JSD. */
  beta: number;
  /** Divides the student's logits (and the teacher's unless teacherTemperature is given); default 1. */
  temperature?: number;
  /** Divides the teacher's logits; 1 when they are already log-probabilities at the temperature. */
  teacherTemperature?: number;
  /**
   * The gradient: "write" into a new [N,V] tensor, "inPlace" over the logits, "accumulate" added
   * into `into` (e.g. a cross-entropy gradient already there); absent = loss only.
   */
  grad?: "write" | "inPlace" | "accumulate";
  into?: Tensor;
  /** Multiplies the gradient (1 / loss tokens for a mean; a mixing weight). */
  gradScale?: number;
}

const MODES = { write: 1, inPlace: 2, accumulate: 3 } as const;

/** 0 forward KL, 1 reverse KL, 2 the general mixture (the shader's and the reference's `kind`). */
function kindOf(beta: number): 0 | 1 | 2 {
  return beta === 0 ? 0 : beta === 1 ? 1 : 2;
}

function checkArgs(o: { N: number; V: number; beta: number; temperature?: number; teacherTemperature?: number }, where: string): void {
  check(Number.isInteger(o.N) && o.N > 0 && Number.isInteger(o.V) && o.V > 0, "DISTILL_SHAPE", `${where}: N = ${o.N}, V = ${o.V} must be positive integers`);
  check(o.beta >= 0 && o.beta <= 1, "DISTILL_ARGS", `${where}: beta = ${o.beta} must be in [0, 1]`);
  for (const k of ["temperature", "teacherTemperature"] as const) {
    const t = o[k];
    check(t === undefined || (Number.isFinite(t) && t > 0), "DISTILL_ARGS", `${where}: ${k} = ${t} must be a number > 0`);
  }
}

/** Per-row divergence [N] (0 where targets < 0) and, with `grad`, dlogits = gradScale · ∂loss/∂logits. */
export function generalizedJsd(gpu: Gpu, logits: Tensor, teacher: Tensor, targets: Tensor, o: JsdOptions): { loss: Tensor; dlogits?: Tensor } {
  const { N, V } = o;
  checkArgs(o, "generalizedJsd");
  for (const [name, t] of [["logits", logits], ["teacher", teacher]] as const) {
    check(t.dtype === "f32" && t.size >= N * V, "DISTILL_SHAPE", `generalizedJsd: ${name} [${t.shape}] ${t.dtype} must be f32 with N*V = ${N}*${V} elements`);
  }
  check(targets.dtype === "i32" && targets.size >= N, "DISTILL_SHAPE", `generalizedJsd: targets [${targets.shape}] ${targets.dtype} must be i32 [${N}]`);
  check((o.grad === "accumulate") === (o.into !== undefined), "DISTILL_ARGS", "generalizedJsd: `into` goes with grad: \"accumulate\" (and only with it)");
  check(o.into === undefined || (o.into.dtype === "f32" && o.into.size >= N * V), "DISTILL_SHAPE", `generalizedJsd: into must be f32 [${N},${V}]`);
  check(o.gradScale === undefined || Number.isFinite(o.gradScale), "DISTILL_ARGS", `generalizedJsd: gradScale = ${o.gradScale} must be finite`);
  const t = o.temperature ?? 1;
  const loss = gpu.tensor([N]);
  const dlogits = o.grad === "write" ? gpu.tensor([N, V]) : o.grad === "inPlace" ? logits : o.into;
  gpu.dispatch("distill", "main", {
    bindings: { x: logits, dx: o.grad === "write" || o.grad === "accumulate" ? dlogits! : UNUSED, teacher, targets, loss },
    params: [N, V, o.grad ? MODES[o.grad] : 0, kindOf(o.beta), f32(o.beta), f32(1 / t), f32(1 / (o.teacherTemperature ?? t)), f32(o.gradScale ?? 1)],
    workgroups: grid1d(N, 1),
  });
  return dlogits ? { loss, dlogits } : { loss };
}

/** log-softmax of row n of `x` divided by temperature, in f64. */
function logSoftmax(x: ArrayLike<number>, n: number, V: number, temperature: number): Float64Array {
  const out = new Float64Array(V);
  let mx = -Infinity;
  for (let j = 0; j < V; j++) mx = Math.max(mx, x[n * V + j] / temperature);
  let se = 0;
  for (let j = 0; j < V; j++) se += Math.exp(x[n * V + j] / temperature - mx);
  const lse = mx + Math.log(se);
  for (let j = 0; j < V; j++) out[j] = x[n * V + j] / temperature - lse;
  return out;
}

/**
 * CPU reference in f64, written the way TRL writes it (F.kl_div on log-probabilities, the mixture
 * by logsumexp): per-row loss and dlogits (gradScale applied), zero for rows with target < 0.
 */
export function generalizedJsdReference(
  logits: ArrayLike<number>,
  teacher: ArrayLike<number>,
  targets: ArrayLike<number>,
  o: { N: number; V: number; beta: number; temperature?: number; teacherTemperature?: number; gradScale?: number },
): { loss: Float64Array; dlogits: Float64Array } {
  checkArgs(o, "generalizedJsdReference");
  const { N, V, beta } = o, temp = o.temperature ?? 1, gs = o.gradScale ?? 1;
  const kind = kindOf(beta);
  const loss = new Float64Array(N), dlogits = new Float64Array(N * V);
  // KL(P ‖ Q) = Σ P (log P - log Q) over log-probabilities (F.kl_div(logQ, logP, log_target=True).sum()).
  const kl = (lp: Float64Array, lq: Float64Array) => lp.reduce((s, v, j) => s + Math.exp(v) * (v - lq[j]), 0);
  for (let n = 0; n < N; n++) {
    if (targets[n] < 0) continue;
    const ls = logSoftmax(logits, n, V, temp), lt = logSoftmax(teacher, n, V, o.teacherTemperature ?? temp);
    const lm = ls.map((v, j) => {
      const a = Math.log(1 - beta) + v, b = Math.log(beta) + lt[j], m = Math.max(a, b);
      return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
    });
    loss[n] = kind === 0 ? kl(lt, ls) : kind === 1 ? kl(ls, lt) : beta * kl(lt, lm) + (1 - beta) * kl(ls, lm);
    // dL/dS_k as if S were free, then through the softmax: dL/ds = S (g - Σ S g); s = logits / temperature.
    const g = ls.map((v, j) => kind === 0 ? -Math.exp(lt[j] - v) : kind === 1 ? v - lt[j] + 1 : (1 - beta) * (v - lm[j]));
    const sg = ls.reduce((s, v, j) => s + Math.exp(v) * g[j], 0);
    for (let j = 0; j < V; j++) dlogits[n * V + j] = (gs / temp) * Math.exp(ls[j]) * (g[j] - sg);
  }
  return { loss, dlogits };
}
