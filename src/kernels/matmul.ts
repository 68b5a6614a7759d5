/**
 * Matrix multiply C[M,N] = alpha * op(A) · op(B) (+ C when accumulate), the hot kernel of every
 * linear layer, forward and backward (shaders/matmul.wgsl).
 *
 *   linear forward  y = x·Wᵀ  (W [out,in]): matmul(gpu, x, W, {M: rows, N: out, K: in, transB: true})
 *   grad of input   dX = dY·W:              matmul(gpu, dY, W, {M: rows, N: in, K: out})
 *   grad of weight  dW = dYᵀ·X:             matmul(gpu, dY, X, {M: out, N: in, K: rows, transA: true})
 *
 * M <= 8 (decode: matrix-vector) takes a gemv path that spreads the work over the output columns
 * instead of 64x64 tiles, which would leave most of each tile idle.
 */
import { check } from "../errors.ts";
import { type DType, f32, type Gpu, grid1d, type Tensor } from "../gpu/gpu.ts";

export interface MatmulOptions {
  M: number;
  N: number;
  K: number;
  /** A is stored [K,M] (op(A) = Aᵀ). */
  transA?: boolean;
  /** B is stored [N,K] (op(B) = Bᵀ), the layout of a PyTorch weight [out,in]. */
  transB?: boolean;
  alpha?: number;
  /** C += alpha·op(A)·op(B) into `out` (required) instead of overwriting it. */
  accumulate?: boolean;
  out?: Tensor;
  /** Element offset of A's first element inside `a`. */
  aOffset?: number;
  /** Element offset of B's first element inside `b`. */
  bOffset?: number;
}

/** Rows at or below which the gemv path is used. */
export const GEMV_MAX_ROWS = 8;

function validate(op: string, aSize: number, bSize: number, o: MatmulOptions): void {
  for (const k of ["M", "N", "K"] as const) {
    check(Number.isInteger(o[k]) && o[k] > 0, "MATMUL_SHAPE", `${op}: ${k} = ${o[k]} must be a positive integer`);
  }
  const aOff = o.aOffset ?? 0, bOff = o.bOffset ?? 0;
  check(Number.isInteger(aOff) && aOff >= 0, "MATMUL_SHAPE", `${op}: aOffset = ${aOff} must be a non-negative integer`);
  check(Number.isInteger(bOff) && bOff >= 0, "MATMUL_SHAPE", `${op}: bOffset = ${bOff} must be a non-negative integer`);
  check(aSize >= aOff + o.M * o.K, "MATMUL_SHAPE", () => `${op}: A has ${aSize} elements, needs aOffset ${aOff} + M*K = ${o.M}*${o.K}`);
  check(bSize >= bOff + o.K * o.N, "MATMUL_SHAPE", () => `${op}: B has ${bSize} elements, needs bOffset ${bOff} + K*N = ${o.K}*${o.N}`);
  check(o.alpha === undefined || Number.isFinite(o.alpha), "MATMUL_ARGS", `${op}: alpha = ${o.alpha} must be finite`);
}

/**
 * Checks and dispatches one of the shaders built on shaders/lib/matmul_body.wgsl (same
 * bindings, params, overrides, entry points and grids; they differ only in how A and B load).
 * `op` names the caller in errors; `inputDtype` is the dtype A and B must have; C is always f32.
 */
export function dispatchMatmul(gpu: Gpu, op: string, shader: string, inputDtype: DType, a: Tensor, b: Tensor, o: MatmulOptions): Tensor {
  validate(op, a.size, b.size, o);
  const { M, N, K } = o;
  check(a.dtype === inputDtype && b.dtype === inputDtype, "MATMUL_ARGS", `${op}: A and B must be ${inputDtype} (got ${a.dtype}, ${b.dtype})`);
  check(!o.accumulate || o.out, "MATMUL_ARGS", `${op}: accumulate needs \`out\` (the C to add to)`);
  if (o.out) {
    check(o.out.dtype === "f32" && o.out.size >= M * N, "MATMUL_SHAPE", `${op}: out [${o.out.shape}] ${o.out.dtype} cannot hold f32 [${M},${N}]`);
    check(o.out.buffer !== a.buffer && o.out.buffer !== b.buffer, "MATMUL_ARGS", `${op}: out must not alias A or B`);
  }
  const c = o.out ?? gpu.tensor([M, N]);
  const params = [M, N, K, o.aOffset ?? 0, o.bOffset ?? 0, o.accumulate ? 1 : 0, f32(o.alpha ?? 1)];
  const bindings = { a, b, c };
  const constants: Record<string, number> = { TRANS_A: o.transA ? 1 : 0, TRANS_B: o.transB ? 1 : 0 };
  if (M <= GEMV_MAX_ROWS) {
    constants.ROWS = M;
    if (o.transB) gpu.dispatch(shader, "gemv_t", { bindings, params, constants, workgroups: grid1d(N, 32) });
    else gpu.dispatch(shader, "gemv_n", { bindings, params, constants, workgroups: grid1d(N, 64) });
  } else {
    check(Math.ceil(N / 64) <= 65535 && Math.ceil(M / 64) <= 65535, "MATMUL_SHAPE", `${op}: [${M},${N}] is too large for one dispatch`);
    gpu.dispatch(shader, "tiled", { bindings, params, constants, workgroups: [Math.ceil(N / 64), Math.ceil(M / 64)] });
  }
  return c;
}

export function matmul(gpu: Gpu, a: Tensor, b: Tensor, o: MatmulOptions): Tensor {
  return dispatchMatmul(gpu, "matmul", "matmul", "f32", a, b, o);
}

/**
 * CPU reference with f64 accumulation over element readers (`value(i)` of A's / B's storage);
 * `c` is the C added to when accumulate.
 */
export function matmulReferenceOf(
  op: string,
  a: { length: number; value(i: number): number },
  b: { length: number; value(i: number): number },
  o: MatmulOptions,
  c?: Float32Array,
): Float32Array {
  validate(op, a.length, b.length, o);
  const { M, N, K } = o;
  const aOff = o.aOffset ?? 0, bOff = o.bOffset ?? 0, alpha = o.alpha ?? 1;
  const out = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const av = a.value(o.transA ? aOff + k * M + m : aOff + m * K + k);
        const bv = b.value(o.transB ? bOff + n * K + k : bOff + k * N + n);
        s += av * bv;
      }
      out[m * N + n] = alpha * s + (o.accumulate && c ? c[m * N + n] : 0);
    }
  }
  return out;
}

/** CPU reference with f64 accumulation; `c` is the C added to when accumulate. */
export function matmulReference(a: Float32Array, b: Float32Array, o: MatmulOptions, c?: Float32Array): Float32Array {
  return matmulReferenceOf("matmul", { length: a.length, value: (i) => a[i] }, { length: b.length, value: (i) => b[i] }, o, c);
}
