/**
 * AdamW optimizer step (PyTorch semantics) and the squared L2 norm over many tensors that
 * global grad-norm clipping needs (shaders/adamw.wgsl).
 */
import { check } from "../errors.ts";
import { f32, type Gpu, grid1d, type Tensor, UNUSED } from "../gpu/gpu.ts";

export interface AdamwState {
  param: Tensor;
  grad: Tensor;
  m: Tensor;
  v: Tensor;
}
export interface AdamwOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count, for bias correction. */
  step: number;
  /** Multiplies the gradient first (e.g. a clipping factor or 1/accumulation steps). */
  gradScale?: number;
}

/** Checks AdamW's hyper-parameters (PeftError ADAMW_ARGS naming the option). */
export function validateAdamwOptions(o: AdamwOptions): void {
  for (const k of ["lr", "eps", "weightDecay"] as const) {
    check(Number.isFinite(o[k]) && o[k] >= 0, "ADAMW_ARGS", `adamw: ${k} = ${o[k]} must be a finite number >= 0`);
  }
  for (const k of ["beta1", "beta2"] as const) {
    check(o[k] >= 0 && o[k] < 1, "ADAMW_ARGS", `adamw: ${k} = ${o[k]} must be in [0, 1)`);
  }
  check(Number.isInteger(o.step) && o.step >= 1, "ADAMW_ARGS", `adamw: step = ${o.step} must be an integer >= 1 (1-based)`);
  check(o.gradScale === undefined || Number.isFinite(o.gradScale), "ADAMW_ARGS", `adamw: gradScale = ${o.gradScale} must be finite`);
}

/** The uniform Params of shaders/lib/adamw_update.wgsl (adamw.wgsl, adamw8bit.wgsl). */
export function adamwParams(n: number, o: AdamwOptions, off = 0, count = 0) {
  const bc1 = 1 - o.beta1 ** o.step, bc2 = 1 - o.beta2 ** o.step;
  return [n, off, count, 0, f32(o.lr), f32(o.beta1), f32(o.beta2), f32(o.eps), f32(o.weightDecay), f32(bc1), f32(bc2), f32(o.gradScale ?? 1)];
}

/** One AdamW update of `param` (and its moments m, v) in place. */
export function adamwStep(gpu: Gpu, s: AdamwState, o: AdamwOptions): void {
  validateAdamwOptions(o);
  const n = s.param.size;
  for (const k of ["grad", "m", "v"] as const) {
    check(s[k].size === n && s[k].dtype === "f32", "ADAMW_SHAPE", `adamw: ${k} [${s[k].shape}] ${s[k].dtype} must match param [${s.param.shape}] f32`);
  }
  check(s.param.dtype === "f32", "ADAMW_SHAPE", `adamw: param must be f32 (got ${s.param.dtype})`);
  // partials/total are unused by `step` (every binding of the file must be bound).
  gpu.dispatch("adamw", "step", {
    bindings: { param: s.param, grad: s.grad, m: s.m, v: s.v, partials: UNUSED, total: UNUSED },
    params: adamwParams(n, o),
    workgroups: grid1d(n, 64),
  });
}

/** Stage-1 workgroups per tensor: enough to fill a GPU, few enough that stage 2 is one workgroup's job. */
const GROUPS_PER_TENSOR = 64;
const NO_OPT: AdamwOptions = { lr: 0, beta1: 0, beta2: 0, eps: 0, weightDecay: 0, step: 1 };

/** [1] = Σ over all tensors of x² (f32), two-stage reduction in a fixed order (deterministic). */
export function sumOfSquares(gpu: Gpu, tensors: Tensor[], out?: Tensor): Tensor {
  check(tensors.length > 0, "SUM_OF_SQUARES_ARGS", "sumOfSquares: needs at least one tensor");
  for (const [i, t] of tensors.entries()) {
    check(t.dtype === "f32", "SUM_OF_SQUARES_ARGS", `sumOfSquares: tensor #${i} [${t.shape}] is ${t.dtype}, not f32`);
  }
  check(!out || (out.dtype === "f32" && out.size >= 1), "SUM_OF_SQUARES_ARGS", "sumOfSquares: out must be an f32 tensor of at least 1 element");
  check(!out || !tensors.some((t) => t.buffer === out.buffer), "SUM_OF_SQUARES_ARGS", "sumOfSquares: out must not be one of the tensors");
  const groups = tensors.map((t) => Math.max(1, Math.min(GROUPS_PER_TENSOR, Math.ceil(t.size / 256))));
  const count = groups.reduce((a, b) => a + b, 0);
  const partials = gpu.tensor([count]);
  const total = out ?? gpu.tensor([1]);
  let off = 0;
  tensors.forEach((t, i) => {
    gpu.dispatch("adamw", "partial_sums", {
      // param/m/v are unused by the reduction but must be bound.
      bindings: { param: UNUSED, grad: t, m: UNUSED, v: UNUSED, partials, total },
      params: adamwParams(t.size, NO_OPT, off),
      workgroups: [groups[i]],
    });
    off += groups[i];
  });
  gpu.dispatch("adamw", "final_sum", {
    bindings: { param: UNUSED, grad: tensors[0], m: UNUSED, v: UNUSED, partials, total },
    params: adamwParams(0, NO_OPT, 0, count),
    workgroups: [1],
  });
  partials.release(); // the pool hands it out again only to work recorded after this
  return total;
}

// ------------------------------------------------------------ CPU references (f64)

/** One AdamW step on host copies; returns the new param, m and v. */
export function adamwReference(
  s: { param: Float32Array; grad: Float32Array; m: Float32Array; v: Float32Array },
  o: AdamwOptions,
): { param: Float32Array; m: Float32Array; v: Float32Array } {
  validateAdamwOptions(o);
  const n = s.param.length, gs = o.gradScale ?? 1;
  const bc1 = 1 - o.beta1 ** o.step, bc2 = 1 - o.beta2 ** o.step;
  const param = new Float32Array(n), m = new Float32Array(n), v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const g = s.grad[i] * gs;
    const mi = o.beta1 * s.m[i] + (1 - o.beta1) * g;
    const vi = o.beta2 * s.v[i] + (1 - o.beta2) * g * g;
    let w = s.param[i];
    w -= o.lr * o.weightDecay * w;
    w -= o.lr * (mi / bc1) / (Math.sqrt(vi / bc2) + o.eps);
    param[i] = w, m[i] = mi, v[i] = vi;
  }
  return { param, m, v };
}

export function sumOfSquaresReference(tensors: Float32Array[]): number {
  let s = 0;
  for (const t of tensors) for (let i = 0; i < t.length; i++) s += t[i] * t[i];
  return s;
}
