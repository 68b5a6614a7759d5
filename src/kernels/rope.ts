/**
 * Rotary position embedding, GGUF / llama.cpp "normal" mode (adjacent pairs rotate).
 * Launcher for shaders/rope.wgsl, its cos/sin table, and the CPU reference.
 *
 * theta(pos, i) = f32(pos) * f32(base^(-2i/ropeDim)), rounded to f32 like llama.cpp's
 * `pos * powf(base, -2i/ropeDim)`; cos/sin of that f32 angle are evaluated in f64 on the host
 * and rounded once, so the GPU and the reference agree with llama.cpp to ~1e-7 per factor.
 */
import { type Gpu, grid1d, type Tensor } from "../gpu/gpu.ts";
import { check } from "../errors.ts";

export interface RopeOptions {
  N: number;
  T: number;
  pos0: number;
  nHeads: number;
  headDim: number;
  ropeDim: number;
  base: number;
  inverse?: boolean;
  out?: Tensor;
}

/** f32 rotation angle of pair i at position pos (llama.cpp's f32 arithmetic). */
export function ropeTheta(pos: number, i: number, ropeDim: number, base: number): number {
  return Math.fround(Math.fround(pos) * Math.fround(Math.pow(base, (-2 * i) / ropeDim)));
}

interface CosSinTable {
  tensor: Tensor;
  positions: number;
}
// One table per GPU and (base, ropeDim); grown to the next power of two of positions as needed
// (shared with rope_rows.ts).
const tables = new WeakMap<Gpu, Map<string, CosSinTable>>();

export function cosSinTable(gpu: Gpu, ropeDim: number, base: number, positions: number): Tensor {
  let perGpu = tables.get(gpu);
  if (!perGpu) tables.set(gpu, perGpu = new Map());
  const key = `${base}:${ropeDim}`;
  const have = perGpu.get(key);
  if (have && have.positions >= positions) return have.tensor;
  const cap = Math.max(256, 2 ** Math.ceil(Math.log2(positions)));
  const half = ropeDim / 2;
  const data = new Float32Array(cap * half * 2);
  for (let pos = 0; pos < cap; pos++) {
    for (let i = 0; i < half; i++) {
      const th = ropeTheta(pos, i, ropeDim, base);
      data[2 * (pos * half + i)] = Math.cos(th);
      data[2 * (pos * half + i) + 1] = Math.sin(th);
    }
  }
  have?.tensor.release();
  const tensor = gpu.upload(data, [cap, half, 2], "f32", "other");
  perGpu.set(key, { tensor, positions: cap });
  return tensor;
}

function checkOptions(o: RopeOptions): void {
  const int = (v: number, name: string, min: number) =>
    check(Number.isInteger(v) && v >= min, "KERNEL_ARGS", `rope: ${name} must be an integer >= ${min}, got ${v}`);
  int(o.N, "N", 1);
  int(o.T, "T", 1);
  int(o.pos0, "pos0", 0);
  int(o.nHeads, "nHeads", 1);
  int(o.headDim, "headDim", 1);
  int(o.ropeDim, "ropeDim", 2);
  check(o.N % o.T === 0, "KERNEL_ARGS", `rope: N=${o.N} rows is not a whole number of sequences of T=${o.T}`);
  check(o.ropeDim % 2 === 0 && o.ropeDim <= o.headDim, "KERNEL_ARGS", `rope: ropeDim=${o.ropeDim} must be even and <= headDim=${o.headDim}`);
  check(Number.isFinite(o.base) && o.base > 0, "KERNEL_ARGS", `rope: base must be a positive number, got ${o.base}`);
}

/** Rotates x (or -theta when inverse: the backward) into out; out may be x itself. */
export function rope(gpu: Gpu, x: Tensor, o: RopeOptions): Tensor {
  checkOptions(o);
  const n = o.N * o.nHeads * o.headDim;
  check(x.dtype === "f32" && x.size >= n, "KERNEL_ARGS", `rope x: needs an f32 tensor of ${n} elements, got [${x.shape}] ${x.dtype}`);
  const out = o.out ?? gpu.tensor([o.N, o.nHeads * o.headDim]);
  check(out.dtype === "f32" && out.size >= n, "KERNEL_ARGS", `rope out: needs an f32 tensor of ${n} elements, got [${out.shape}] ${out.dtype}`);
  // The shader rotates in place (a storage buffer cannot be bound read and read_write at once).
  if (out !== x) gpu.copy(x, out, n * 4);
  const half = o.ropeDim / 2;
  const cs = cosSinTable(gpu, o.ropeDim, o.base, o.pos0 + o.T);
  gpu.dispatch("rope", "main", {
    bindings: { x: out, cs },
    params: [o.N, o.T, o.pos0, o.nHeads, o.headDim, half, o.inverse ? 1 : 0],
    workgroups: grid1d(o.N * o.nHeads * half, 64),
  });
  return out;
}

// ------------------------------------------------------------------ CPU reference (f64)

export function ropeReference(x: Float32Array, o: Omit<RopeOptions, "out">): Float32Array {
  const { N, T, pos0, nHeads, headDim: D, ropeDim, base } = o;
  const y = Float32Array.from(x.subarray(0, N * nHeads * D));
  for (let r = 0; r < N; r++) {
    const pos = pos0 + (r % T);
    for (let h = 0; h < nHeads; h++) {
      for (let i = 0; i < ropeDim / 2; i++) {
        const th = ropeTheta(pos, i, ropeDim, base);
        const c = Math.cos(th), s = o.inverse ? -Math.sin(th) : Math.sin(th);
        const k = r * nHeads * D + h * D + 2 * i;
        const x0 = x[k], x1 = x[k + 1];
        y[k] = x0 * c - x1 * s;
        y[k + 1] = x0 * s + x1 * c;
      }
    }
  }
  return y;
}
