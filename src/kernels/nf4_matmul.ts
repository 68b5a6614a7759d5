/**
 * 4-bit (NF4/FP4) weights on the GPU and the matmuls that read them (shaders/nf4_matmul.wgsl):
 *   qmatmul:          y  = alpha * x · dequant(W)ᵀ   x [M, in],  y [M, out]
 *   qmatmulBackward:  dx = alpha * dy · dequant(W)   dy [M, out], dx [M, in]
 * W stays packed (4 bits a value) plus its block scales (f32, or 8-bit codes with double quant);
 * the kernels dequantize each element as they load it. x / dy may be f32 or f16 (computeDtype
 * "f16": shaders/nf4_matmul_f16.wgsl reads the halves; everything else stays f32).
 *
 * Memory: the small per-weight pieces (code map, nested map, offset, nested absmax) of a group
 * of weights share one f32 `tables` tensor, so a model's linear weights cost the packed codes
 * plus the per-block scales and little else (see uploadQuantizedGroup).
 */
import { check, PeftError } from "../errors.ts";
import { f32, type Gpu, grid1d, type Tensor } from "../gpu/gpu.ts";
import { dequantize4bit, type QuantState4bit, type QuantType4 } from "../quant/mod.ts";
import { requireShaderF16 } from "./convert_f16.ts";

export interface QuantizedWeight {
  /** [out, in] */
  shape: [number, number];
  type: QuantType4;
  blocksize: number;
  doubleQuant: boolean;
  /** Packed codes, u8 [ceil(out*in/2)]. */
  codes: Tensor;
  /** f32 [blocks], or u8 [blocks] codes when double-quantized. */
  absmax: Tensor;
  /** Shared tables tensor (f32) and this weight's offsets into it. */
  tables: Tensor;
  codeOffset: number;
  nestedMapOffset: number;
  nestedAbsmaxOffset: number;
  offsetIndex: number;
  /** Releases codes and scales; the shared tables go when the group's last weight goes. */
  release(): void;
}

function checkState(state: QuantState4bit, shape: [number, number], what: string) {
  check(
    shape.length === 2 && shape[0] * shape[1] === state.n,
    "QUANT_BAD_SHAPE",
    `${what}: shape [${shape}] does not hold the ${state.n} quantized values`,
  );
  check(state.packed.length === Math.ceil(state.n / 2), "QUANT_BAD_SHAPE", `${what}: ${state.packed.length} packed bytes for ${state.n} values`);
}

/**
 * Uploads several quantized weights; their tables share one tensor (maps deduplicated), so the
 * GPU holds: codes (4 bits/value) + scales (f32 or 8-bit per block) per weight, and one small
 * tables tensor for the group. Category "weights".
 */
export function uploadQuantizedGroup(gpu: Gpu, items: { state: QuantState4bit; shape: [number, number]; name?: string }[]): QuantizedWeight[] {
  const table: number[] = [];
  const mapIndex = new Map<string, number>();
  const addMap = (m: Float32Array) => {
    const key = Array.from(new Uint32Array(m.buffer, m.byteOffset, m.length)).join(",");
    let at = mapIndex.get(key);
    if (at === undefined) {
      at = table.length;
      for (const v of m) table.push(v);
      mapIndex.set(key, at);
    }
    return at;
  };
  const layout = items.map(({ state, shape, name }, i) => {
    checkState(state, shape, name ?? `weight #${i}`);
    const codeOffset = addMap(state.code);
    if (!state.nested) return { codeOffset, nestedMapOffset: 0, nestedAbsmaxOffset: 0, offsetIndex: 0 };
    const nestedMapOffset = addMap(state.nested.map);
    const offsetIndex = table.length;
    table.push(state.nested.offset);
    const nestedAbsmaxOffset = table.length;
    for (const v of state.nested.absmax) table.push(v);
    return { codeOffset, nestedMapOffset, nestedAbsmaxOffset, offsetIndex };
  });
  const tables = gpu.upload(new Float32Array(table), [table.length], "f32", "weights");
  let live = items.length;
  return items.map(({ state, shape }, i) => {
    const codes = gpu.upload(state.packed, [state.packed.length], "u8", "weights");
    const absmax = state.nested
      ? gpu.upload(state.nested.codes, [state.nested.codes.length], "u8", "weights")
      : gpu.upload(state.absmax!, [state.absmax!.length], "f32", "weights");
    let released = false;
    return {
      shape: [shape[0], shape[1]] as [number, number],
      type: state.type,
      blocksize: state.blocksize,
      doubleQuant: state.nested !== null,
      codes,
      absmax,
      tables,
      ...layout[i],
      release() {
        if (released) return;
        released = true;
        codes.release();
        absmax.release();
        if (--live === 0) tables.release();
      },
    };
  });
}

/** Uploads one quantized weight [out, in] (its own small tables tensor). */
export function uploadQuantized(gpu: Gpu, state: QuantState4bit, shape: [number, number], name?: string): QuantizedWeight {
  return uploadQuantizedGroup(gpu, [{ state, shape, name }])[0];
}

export interface QmatmulOptions {
  /** Rows of x (tokens). */
  M: number;
  alpha?: number;
  /** Add into `out` instead of overwriting it. */
  accumulate?: boolean;
  out?: Tensor;
}

function params(qw: QuantizedWeight, M: number, alpha: number, accumulate: boolean) {
  const [N, K] = qw.shape;
  return [
    M, N, K, qw.blocksize,
    qw.doubleQuant ? 1 : 0, qw.codeOffset, qw.nestedMapOffset, qw.nestedAbsmaxOffset,
    qw.offsetIndex, accumulate ? 1 : 0, f32(alpha), Math.log2(qw.blocksize),
  ];
}

/** 64x64 output tiles: [ceil(cols/64), ceil(rows/64)]. */
function tiles(cols: number, rows: number, what: string): [number, number] {
  const g: [number, number] = [Math.ceil(cols / 64), Math.ceil(rows / 64)];
  check(g[0] <= 65535 && g[1] <= 65535, "KERNEL_ARGS", `${what}: [${rows}, ${cols}] is too large for one dispatch`);
  return g;
}

function bindings(qw: QuantizedWeight, a: Tensor, y: Tensor) {
  return { a, codes: qw.codes, absmax: qw.absmax, tables: qw.tables, y };
}

function checkIo(what: string, t: Tensor, rows: number, cols: number, dtypes: string[] = ["f32"]) {
  if (!dtypes.includes(t.dtype) || t.size < rows * cols) {
    throw new PeftError("KERNEL_ARGS", `${what}: needs an ${dtypes.join(" or ")} tensor of at least [${rows}, ${cols}], got ${t.dtype} [${t.shape}]`);
  }
}

/**
 * The shader for the activations' dtype: f32, or f16 halves (computeDtype "f16": the activations
 * narrowed by toF16, widened exactly as the kernel reads them; codes, scales and sums as in f32).
 */
function shaderFor(gpu: Gpu, a: Tensor): string {
  if (a.dtype !== "f16") return "nf4_matmul";
  requireShaderF16(gpu, "4-bit matmul with f16 activations");
  return "nf4_matmul_f16";
}

/** y [M, out] = alpha * x [M, in] · dequant(W)ᵀ (+ out when accumulate). */
export function qmatmul(gpu: Gpu, x: Tensor, qw: QuantizedWeight, opts: QmatmulOptions): Tensor {
  const { M, alpha = 1, accumulate = false } = opts;
  const [N, K] = qw.shape;
  checkIo("qmatmul x", x, M, K, ["f32", "f16"]);
  check(!accumulate || opts.out, "KERNEL_ARGS", "qmatmul: accumulate needs out");
  const y = opts.out ?? gpu.tensor([M, N]);
  checkIo("qmatmul out", y, M, N);
  const args = { bindings: bindings(qw, x, y), params: params(qw, M, alpha, accumulate) };
  const shader = shaderFor(gpu, x);
  if (M <= 8 && K % 8 === 0) {
    gpu.dispatch(shader, "gemv8", { ...args, constants: { ROWS: M }, workgroups: grid1d(N, 32) });
  } else if (M <= 8) {
    gpu.dispatch(shader, "gemv_any", { ...args, workgroups: grid1d(N, 1) });
  } else {
    gpu.dispatch(shader, "tiled_fwd", { ...args, workgroups: tiles(N, M, "qmatmul") });
  }
  return y;
}

/** dx [M, in] = alpha * dy [M, out] · dequant(W) (+ out when accumulate). */
export function qmatmulBackward(gpu: Gpu, dy: Tensor, qw: QuantizedWeight, opts: QmatmulOptions): Tensor {
  const { M, alpha = 1, accumulate = false } = opts;
  const [N, K] = qw.shape;
  checkIo("qmatmulBackward dy", dy, M, N, ["f32", "f16"]);
  check(!accumulate || opts.out, "KERNEL_ARGS", "qmatmulBackward: accumulate needs out");
  const dx = opts.out ?? gpu.tensor([M, K]);
  checkIo("qmatmulBackward out", dx, M, K);
  const args = { bindings: bindings(qw, dy, dx), params: params(qw, M, alpha, accumulate) };
  const shader = shaderFor(gpu, dy);
  if (M <= 8 && K % 8 === 0) {
    gpu.dispatch(shader, "gemv_bwd8", { ...args, constants: { ROWS: M }, workgroups: grid1d(K / 8, 8) });
  } else {
    gpu.dispatch(shader, "tiled_bwd", { ...args, workgroups: tiles(K, M, "qmatmulBackward") });
  }
  return dx;
}

// ------------------------------------------------------------------ CPU references (f64 sums)

/** y = alpha * x · Wᵀ with W = dequantize4bit(state) [N, K]; accumulates in f64. */
export function qmatmulReference(x: Float32Array, state: QuantState4bit, shape: [number, number], M: number, alpha = 1): Float32Array {
  const [N, K] = shape;
  const w = dequantize4bit(state);
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      y[m * N + n] = alpha * s;
    }
  }
  return y;
}

/** dx = alpha * dy · W with W = dequantize4bit(state) [N, K]; accumulates in f64. */
export function qmatmulBackwardReference(dy: Float32Array, state: QuantState4bit, shape: [number, number], M: number, alpha = 1): Float32Array {
  const [N, K] = shape;
  const w = dequantize4bit(state);
  const dx = new Float64Array(M * K);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      const g = dy[m * N + n];
      for (let k = 0; k < K; k++) dx[m * K + k] += g * w[n * K + k];
    }
  }
  return Float32Array.from(dx, (v) => alpha * v);
}

/** Bytes the GPU holds for a weight's own tensors (codes + scales), for memory reports. */
export function quantizedBytes(qw: QuantizedWeight): number {
  return qw.codes.byteLength + qw.absmax.byteLength;
}
