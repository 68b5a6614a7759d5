/**
 * RMSNorm (llama): y = x * rstd * w per row, rstd = 1 / sqrt(mean(x^2) + eps).
 * Launchers for shaders/rmsnorm.wgsl (forward) and shaders/rmsnorm_backward.wgsl, and their
 * CPU references (f64 accumulation).
 */
import { f32, type Gpu, grid1d, type Tensor } from "../gpu/gpu.ts";
import { check } from "../errors.ts";

function checkTensor(t: Tensor, n: number, what: string): void {
  check(t.dtype === "f32", "KERNEL_ARGS", `${what}: expected an f32 tensor, got ${t.dtype}`);
  check(t.size >= n, "KERNEL_ARGS", `${what}: tensor [${t.shape}] has ${t.size} elements, needs ${n}`);
}

function checkDims(N: number, C: number, op: string): void {
  check(Number.isInteger(N) && N >= 1, "KERNEL_ARGS", `${op}: N must be a positive integer, got ${N}`);
  check(Number.isInteger(C) && C >= 1, "KERNEL_ARGS", `${op}: C must be a positive integer, got ${C}`);
}

export function rmsnorm(
  gpu: Gpu,
  x: Tensor,
  w: Tensor,
  o: { N: number; C: number; eps: number; saveRstd?: boolean; out?: Tensor },
): { y: Tensor; rstd?: Tensor } {
  const { N, C, eps } = o;
  checkDims(N, C, "rmsnorm");
  check(Number.isFinite(eps) && eps >= 0, "KERNEL_ARGS", `rmsnorm: eps must be a finite non-negative number, got ${eps}`);
  checkTensor(x, N * C, "rmsnorm x");
  checkTensor(w, C, "rmsnorm w");
  check(o.out !== x, "KERNEL_ARGS", "rmsnorm: out must not alias x");
  if (o.out) checkTensor(o.out, N * C, "rmsnorm out");
  const y = o.out ?? gpu.tensor([N, C]);
  // The shader always writes rstd (every binding must be bound); drop it when not wanted.
  const rstd = gpu.tensor([N]);
  gpu.dispatch("rmsnorm", "main", { bindings: { x, w, y, rstd }, params: [N, C, f32(eps)], workgroups: grid1d(N, 1) });
  if (o.saveRstd) return { y, rstd };
  rstd.release();
  return { y };
}

/**
 * dx = rstd * (w * dy) - x * rstd^3 / C * sum_c(w * dy * x) per row;
 * dw[c] = sum_r dy[r, c] * x[r, c] * rstd[r] (fixed-order reduction, deterministic).
 */
export function rmsnormBackward(
  gpu: Gpu,
  dy: Tensor,
  x: Tensor,
  w: Tensor,
  rstd: Tensor,
  o: { N: number; C: number; wantDw?: boolean },
): { dx: Tensor; dw?: Tensor } {
  const { N, C } = o;
  checkDims(N, C, "rmsnormBackward");
  checkTensor(dy, N * C, "rmsnormBackward dy");
  checkTensor(x, N * C, "rmsnormBackward x");
  checkTensor(w, C, "rmsnormBackward w");
  checkTensor(rstd, N, "rmsnormBackward rstd");
  const dx = gpu.tensor([N, C]);
  // dw is bound on both dispatches; a one-element placeholder when the caller does not want it.
  const dw = o.wantDw ? gpu.tensor([C], "f32", "gradients") : gpu.tensor([1]);
  const bindings = { dy, x, w, rstd, dx, dw };
  gpu.dispatch("rmsnorm_backward", "dx_rows", { bindings, params: [N, C], workgroups: grid1d(N, 1) });
  if (o.wantDw) {
    gpu.dispatch("rmsnorm_backward", "dw_cols", { bindings, params: [N, C], workgroups: grid1d(C, 1) });
    return { dx, dw };
  }
  dw.release();
  return { dx };
}

// ------------------------------------------------------------------ CPU references (f64)

export function rmsnormReference(x: Float32Array, w: Float32Array, N: number, C: number, eps: number): { y: Float32Array; rstd: Float32Array } {
  const y = new Float32Array(N * C), rstd = new Float32Array(N);
  for (let r = 0; r < N; r++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[r * C + c] * x[r * C + c];
    const rs = 1 / Math.sqrt(ss / C + eps);
    rstd[r] = rs;
    for (let c = 0; c < C; c++) y[r * C + c] = x[r * C + c] * rs * w[c];
  }
  return { y, rstd };
}

export function rmsnormBackwardReference(
  dy: Float32Array,
  x: Float32Array,
  w: Float32Array,
  N: number,
  C: number,
  eps: number,
): { dx: Float32Array; dw: Float32Array } {
  const dx = new Float32Array(N * C);
  const dw = new Float64Array(C);
  for (let r = 0; r < N; r++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[r * C + c] * x[r * C + c];
    const rs = 1 / Math.sqrt(ss / C + eps);
    let dot = 0;
    for (let c = 0; c < C; c++) dot += w[c] * dy[r * C + c] * x[r * C + c];
    for (let c = 0; c < C; c++) {
      const i = r * C + c;
      dx[i] = rs * w[c] * dy[i] - x[i] * rs * rs * rs * dot / C;
      dw[c] += dy[i] * x[i] * rs;
    }
  }
  return { dx, dw: Float32Array.from(dw) };
}
