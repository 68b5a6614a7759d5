/**
 * Ops between a [rows, cols] matrix and a per-column vector, their column reductions, and row
 * norms (shaders/broadcast.wgsl), with CPU references (f64 accumulation): what the vector PEFT
 * methods need ((IA)³ scaling vectors, bias terms, DoRA's magnitude / weight-norm scale).
 */
import { check } from "../errors.ts";
import { type Gpu, grid1d, type Tensor, UNUSED } from "../gpu/gpu.ts";

function checkMatrix(op: string, t: Tensor, rows: number, cols: number, what = "a"): void {
  check(Number.isInteger(rows) && rows > 0 && Number.isInteger(cols) && cols > 0, "KERNEL_ARGS", `${op}: rows=${rows}, cols=${cols} must be positive integers`);
  check(t.dtype === "f32" && t.size === rows * cols, "KERNEL_ARGS", `${op}: ${what} [${t.shape}] ${t.dtype} must be f32 [${rows}, ${cols}]`);
}

function checkVector(op: string, t: Tensor, n: number, what: string): void {
  check(t.dtype === "f32" && t.size === n, "KERNEL_ARGS", `${op}: ${what} [${t.shape}] ${t.dtype} must be f32 [${n}]`);
}

/** One elementwise pass of broadcast.wgsl: out[r, c] = a[r, c] (op) v[c or r]. */
function broadcastPass(gpu: Gpu, op: string, entry: string, a: Tensor, v: Tensor, rows: number, cols: number, vLen: number): Tensor {
  checkMatrix(op, a, rows, cols);
  checkVector(op, v, vLen, "v");
  const out = gpu.tensor([rows, cols]);
  gpu.dispatch("broadcast", entry, { bindings: { a, v, out }, params: [rows, cols, 0], workgroups: grid1d(rows * cols, 64) });
  return out;
}

/** out[r, c] = a[r, c] · v[c]. */
export function mulCols(gpu: Gpu, a: Tensor, v: Tensor, rows: number, cols: number): Tensor {
  return broadcastPass(gpu, "mulCols", "mul_cols", a, v, rows, cols, cols);
}

/** out[r, c] = a[r, c] + v[c]. */
export function addCols(gpu: Gpu, a: Tensor, v: Tensor, rows: number, cols: number): Tensor {
  return broadcastPass(gpu, "addCols", "add_cols", a, v, rows, cols, cols);
}

/** out[r, c] = a[r, c] · v[r]. */
export function mulRows(gpu: Gpu, a: Tensor, v: Tensor, rows: number, cols: number): Tensor {
  return broadcastPass(gpu, "mulRows", "mul_rows", a, v, rows, cols, rows);
}

/** s[c] = Σ_r a[r, c]·b[r, c] (Σ_r a[r, c] without b); accumulated into `into` when given. */
export function colSum(gpu: Gpu, a: Tensor, b: Tensor | undefined, rows: number, cols: number, into?: Tensor): Tensor {
  checkMatrix("colSum", a, rows, cols);
  if (b) checkMatrix("colSum", b, rows, cols, "b");
  if (into) checkVector("colSum", into, cols, "into");
  const out = into ?? gpu.tensor([cols]);
  const flags = (b ? 1 : 0) | (into ? 2 : 0);
  gpu.dispatch("broadcast", "col_sum", { bindings: { a, v: b ?? UNUSED, out }, params: [rows, cols, flags], workgroups: grid1d(cols, 64) });
  return out;
}

/** n[r] = ||a[r, :]||₂. */
export function rowNorms(gpu: Gpu, a: Tensor, rows: number, cols: number): Tensor {
  checkMatrix("rowNorms", a, rows, cols);
  const out = gpu.tensor([rows]);
  gpu.dispatch("broadcast", "row_norm", { bindings: { a, v: UNUSED, out }, params: [rows, cols, 0], workgroups: grid1d(rows, 1) });
  return out;
}

/** Elementwise a / b. */
export function div(gpu: Gpu, a: Tensor, b: Tensor): Tensor {
  check(a.dtype === "f32" && b.dtype === "f32" && a.size === b.size, "KERNEL_ARGS", `div: [${a.shape}] and [${b.shape}] must be f32 of one size`);
  const out = gpu.tensor(a.shape);
  gpu.dispatch("broadcast", "div", { bindings: { a, v: b, out }, params: [1, a.size, 0], workgroups: grid1d(a.size, 64) });
  return out;
}

// ------------------------------------------------------------------ CPU references (f64)

export function mulColsReference(a: Float32Array, v: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) out[i] = a[i] * v[i % cols];
  return out;
}

export function addColsReference(a: Float32Array, v: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) out[i] = a[i] + v[i % cols];
  return out;
}

export function mulRowsReference(a: Float32Array, v: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) out[i] = a[i] * v[Math.floor(i / cols)];
  return out;
}

export function colSumReference(a: Float32Array, b: Float32Array | undefined, rows: number, cols: number, into?: Float32Array): Float32Array {
  const out = into ?? new Float32Array(cols);
  for (let c = 0; c < cols; c++) {
    let s = 0;
    for (let r = 0; r < rows; r++) s += a[r * cols + c] * (b ? b[r * cols + c] : 1);
    out[c] = (into ? out[c] : 0) + s;
  }
  return out;
}

export function rowNormsReference(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += a[r * cols + c] ** 2;
    out[r] = Math.sqrt(s);
  }
  return out;
}

export function divReference(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((x, i) => x / b[i]);
}
