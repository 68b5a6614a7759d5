/**
 * Weights in ggml block formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, BF16) on the GPU,
 * kept as the GGUF bytes they are, and the kernels that dequantize them on the fly
 * (shaders/ggml_<type>.wgsl on lib/ggml_body.wgsl):
 *   ggmlMatmul:          y  = alpha * x · Wᵀ     x [M, in],  y [M, out]   (a linear layer)
 *   ggmlMatmulBackward:  dx = alpha * dy · W     dy [M, out], dx [M, in]  (through the frozen base)
 *   ggmlEmbedding:       out[i] = alpha * W[ids[i]]   W [vocab, dim], out [ids, dim]
 * W is [out, in] = [N, K] row-major (GGUF's ne = [K, N]); no f32 copy of it is ever made, so the
 * GPU holds exactly the format's bytes per parameter (Q4_K 4.5 bits, Q8_0 8.5, Q6_K 6.5625).
 * M <= 8 (decode) takes gemv entry points (the K-quants: gemv32, lib/ggml_gemv32.wgsl, their
 * scales decoded once per 32 elements); larger M the 64x64 tiled ones (lib/dequant_tiles.wgsl).
 */
import { check, PeftError } from "../errors.ts";
import { f32, type Gpu, grid1d, type Tensor, UNUSED } from "../gpu/gpu.ts";
import { dequantizeGgml, GGML, GGML_TYPES, ggmlTensorBytes } from "../io/ggml_quants.ts";
import { GEMV_MAX_ROWS, matmulReference } from "./matmul.ts";

/** The shader of each type the GPU kernels read. */
const SHADER: Record<number, string> = {
  [GGML.Q8_0]: "ggml_q8_0", [GGML.Q4_0]: "ggml_q4_0", [GGML.Q4_1]: "ggml_q4_1", [GGML.Q5_0]: "ggml_q5_0",
  [GGML.Q5_1]: "ggml_q5_1", [GGML.Q4_K]: "ggml_q4_k", [GGML.Q5_K]: "ggml_q5_k", [GGML.Q6_K]: "ggml_q6_k",
  [GGML.BF16]: "ggml_bf16",
};

/** Types whose decode-sized forward is gemv32 (rows are whole 256-element blocks, so K % 32 == 0). */
const GEMV32 = new Set<number>([GGML.Q4_K, GGML.Q5_K, GGML.Q6_K]);

/** ggml type ids the GPU kernels run. */
export const GGML_GPU_TYPES: readonly number[] = Object.keys(SHADER).map(Number);

export interface GgmlWeight {
  /** ggml type id (io/ggml_quants.ts GGML). */
  type: number;
  /** [out, in] = [N, K]. */
  shape: [number, number];
  /** The ggml bytes as stored in the GGUF file (u8, read as u32 words by the shaders). */
  data: Tensor;
  /** Names the weight in errors. */
  name: string;
  release(): void;
}

/**
 * Uploads a weight [out, in] given as ggml bytes (e.g. GgufFile.readRaw(name).bytes), unchanged.
 * Rows must hold whole blocks (in % 32 or % 256; BF16: in % 8, the kernels' group of 8).
 * Category "weights".
 */
export function uploadGgml(gpu: Gpu, type: number, bytes: Uint8Array, shape: readonly number[], name = "weight"): GgmlWeight {
  const shader = SHADER[type];
  if (!shader) {
    const names = GGML_GPU_TYPES.map((t) => GGML_TYPES.get(t)!.name).join(", ");
    throw new PeftError("UNSUPPORTED", `${name}: tensor type ${GGML_TYPES.get(type)?.name ?? type} has no GPU kernel (supported: ${names})`);
  }
  check(
    shape.length === 2 && shape.every((d) => Number.isInteger(d) && d > 0),
    "GGML_BAD_SHAPE",
    `${name}: a ggml weight must be a matrix [out, in], got [${shape}]`,
  );
  const [N, K] = shape;
  const expected = ggmlTensorBytes(type, shape, name);
  check(type !== GGML.BF16 || K % 8 === 0, "GGML_BAD_SHAPE", `${name}: BF16 rows of ${K} elements: the GPU kernels need a multiple of 8`);
  check(bytes.byteLength === expected, "GGML_BAD_SHAPE", `${name}: [${shape}] of ${GGML_TYPES.get(type)!.name} is ${expected} bytes, got ${bytes.byteLength}`);
  check(expected < 2 ** 32, "GGML_BAD_SHAPE", `${name}: ${expected} bytes exceed the kernels' 32-bit byte offsets`);
  const data = gpu.upload(bytes, [bytes.byteLength], "u8", "weights");
  return { type, shape: [N, K], data, name, release: () => data.release() };
}

/** Bytes the GPU holds for the weight: the format's bytes, padded to a whole u32 word. */
export function ggmlBytes(w: GgmlWeight): number {
  return w.data.byteLength;
}

export interface GgmlMatmulOptions {
  /** Rows of x / dy (tokens). */
  M: number;
  alpha?: number;
  /** Add into `out` instead of overwriting it. */
  accumulate?: boolean;
  out?: Tensor;
}

function checkIo(what: string, t: Tensor, rows: number, cols: number, dtype = "f32") {
  check(t.dtype === dtype && t.size >= rows * cols, "KERNEL_ARGS", () => `${what}: needs a ${dtype} tensor of at least [${rows}, ${cols}], got ${t.dtype} [${t.shape}]`);
}

function prepare(op: string, w: GgmlWeight, a: Tensor, aCols: number, outCols: number, o: GgmlMatmulOptions) {
  const { M, alpha = 1, accumulate = false } = o;
  check(Number.isInteger(M) && M > 0, "KERNEL_ARGS", `${op} ${w.name}: M = ${M} must be a positive integer`);
  check(Number.isFinite(alpha), "KERNEL_ARGS", `${op} ${w.name}: alpha = ${alpha} must be finite`);
  checkIo(`${op} ${w.name} input`, a, M, aCols);
  check(!accumulate || o.out, "KERNEL_ARGS", `${op} ${w.name}: accumulate needs out`);
  const out = o.out ?? a.gpu.tensor([M, outCols]);
  checkIo(`${op} ${w.name} out`, out, M, outCols);
  check(out.buffer !== a.buffer, "KERNEL_ARGS", `${op} ${w.name}: out must not alias the input`);
  const [N, K] = w.shape;
  return { out, args: { bindings: { a, wq: w.data, ids: UNUSED, y: out }, params: [M, N, K, accumulate ? 1 : 0, f32(alpha)] } };
}

/** 64x64 output tiles over [rows, cols]. */
function tiles(op: string, rows: number, cols: number): [number, number] {
  const g: [number, number] = [Math.ceil(cols / 64), Math.ceil(rows / 64)];
  check(g[0] <= 65535 && g[1] <= 65535, "KERNEL_ARGS", `${op}: [${rows}, ${cols}] is too large for one dispatch`);
  return g;
}

/** y [M, out] = alpha * x [M, in] · Wᵀ (+ out when accumulate). */
export function ggmlMatmul(gpu: Gpu, x: Tensor, w: GgmlWeight, opts: GgmlMatmulOptions): Tensor {
  const [N, K] = w.shape;
  const { out, args } = prepare("ggmlMatmul", w, x, K, N, opts);
  const shader = SHADER[w.type];
  if (opts.M <= GEMV_MAX_ROWS) {
    gpu.dispatch(shader, GEMV32.has(w.type) ? "gemv32" : "gemv", { ...args, constants: { ROWS: opts.M }, workgroups: grid1d(N, 32) });
  }
  else gpu.dispatch(shader, "tiled_fwd", { ...args, workgroups: tiles("ggmlMatmul", opts.M, N) });
  return out;
}

/** dx [M, in] = alpha * dy [M, out] · W (+ out when accumulate). */
export function ggmlMatmulBackward(gpu: Gpu, dy: Tensor, w: GgmlWeight, opts: GgmlMatmulOptions): Tensor {
  const [N, K] = w.shape;
  const { out, args } = prepare("ggmlMatmulBackward", w, dy, N, K, opts);
  const shader = SHADER[w.type];
  if (opts.M <= GEMV_MAX_ROWS) gpu.dispatch(shader, "gemv_bwd", { ...args, constants: { ROWS: opts.M }, workgroups: grid1d(K / 8, 8) });
  else gpu.dispatch(shader, "tiled_bwd", { ...args, workgroups: tiles("ggmlMatmulBackward", opts.M, K) });
  return out;
}

/** out [ids, dim] = alpha * W[ids] (+ out when accumulate) for a table W [vocab, dim]; ids >= vocab give zeros. */
export function ggmlEmbedding(gpu: Gpu, w: GgmlWeight, ids: Tensor, opts: Omit<GgmlMatmulOptions, "M"> = {}): Tensor {
  const [V, C] = w.shape;
  const { alpha = 1, accumulate = false } = opts;
  check(ids.dtype === "u32", "EMBEDDING_ARGS", `ggmlEmbedding ${w.name}: ids [${ids.shape}] must be u32 (got ${ids.dtype})`);
  check(Number.isFinite(alpha), "KERNEL_ARGS", `ggmlEmbedding ${w.name}: alpha = ${alpha} must be finite`);
  check(!accumulate || opts.out, "KERNEL_ARGS", `ggmlEmbedding ${w.name}: accumulate needs out`);
  const n = ids.size;
  const out = opts.out ?? gpu.tensor([n, C]);
  checkIo(`ggmlEmbedding ${w.name} out`, out, n, C);
  gpu.dispatch(SHADER[w.type], "embed", {
    bindings: { a: UNUSED, wq: w.data, ids, y: out },
    params: [n, V, C, accumulate ? 1 : 0, f32(alpha)],
    workgroups: grid1d((n * C) / 8, 64),
  });
  return out;
}

// ------------------------------------------------------------------ CPU references (f64 sums)

/** The weight as f32 [N, K] (the exact CPU dequantizer). */
function dequantized(type: number, bytes: Uint8Array, shape: readonly number[]): Float32Array {
  return dequantizeGgml(type, bytes, shape[0] * shape[1]);
}

/** y = alpha * x · Wᵀ, W dequantized on the CPU [N, K]; accumulates in f64. */
export function ggmlMatmulReference(x: Float32Array, type: number, bytes: Uint8Array, shape: readonly number[], M: number, alpha = 1): Float32Array {
  const [N, K] = shape;
  return matmulReference(x, dequantized(type, bytes, shape), { M, N, K, transB: true, alpha });
}

/** dx = alpha * dy · W, W dequantized on the CPU [N, K]; accumulates in f64. */
export function ggmlMatmulBackwardReference(dy: Float32Array, type: number, bytes: Uint8Array, shape: readonly number[], M: number, alpha = 1): Float32Array {
  const [N, K] = shape;
  return matmulReference(dy, dequantized(type, bytes, shape), { M, N: K, K: N, alpha });
}

/** Rows ids of W [V, C] dequantized on the CPU, times alpha; ids >= V give zeros. */
export function ggmlEmbeddingReference(type: number, bytes: Uint8Array, shape: readonly number[], ids: Uint32Array, alpha = 1): Float32Array {
  const [V, C] = shape;
  const w = dequantized(type, bytes, shape);
  const out = new Float32Array(ids.length * C);
  ids.forEach((id, i) => {
    if (id < V) for (let c = 0; c < C; c++) out[i * C + c] = alpha * w[id * C + c];
  });
  return out;
}
