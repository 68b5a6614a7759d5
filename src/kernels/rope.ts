/**
 * Rotary position embedding in llama.cpp's two layouts: "normal" (GGUF llama: adjacent pairs
 * (2i, 2i+1) rotate, q/k rows permuted by the converter) and "neox" (qwen2, phi3: pairs
 * (i, i + ropeDim/2), HF's rotate_half on unpermuted rows). Dims >= ropeDim are left as they are.
 * Launcher for shaders/rope.wgsl, its cos/sin table, and the CPU reference.
 *
 * theta(pos, i) = f32(pos) * f32(base^(-2i/ropeDim)), rounded to f32 like llama.cpp's
 * `pos * powf(base, -2i/ropeDim)`, divided by freqFactors[i] when given (llama.cpp's
 * rope_freqs.weight: Llama 3.x rope scaling, `theta / ff` in f32); cos/sin of that f32 angle are
 * evaluated in f64 on the host and rounded once, so the GPU and the reference agree with
 * llama.cpp to ~1e-7 per factor.
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
  /** Pairs (i, i + ropeDim/2) instead of (2i, 2i + 1). */
  neox?: boolean;
  /** Per-pair divisors of theta ([ropeDim/2], llama.cpp's rope_freqs.weight). */
  freqFactors?: Float32Array;
  inverse?: boolean;
  out?: Tensor;
}

/** f32 rotation angle of pair i at position pos (llama.cpp's f32 arithmetic), over its frequency factor. */
export function ropeTheta(pos: number, i: number, ropeDim: number, base: number, factor = 1): number {
  const theta = Math.fround(Math.fround(pos) * Math.fround(Math.pow(base, (-2 * i) / ropeDim)));
  return factor === 1 ? theta : Math.fround(theta / factor);
}

/** Offsets of pair i's two elements within a head. */
export function ropePair(i: number, ropeDim: number, neox: boolean): [number, number] {
  return neox ? [i, i + ropeDim / 2] : [2 * i, 2 * i + 1];
}

interface CosSinTable {
  tensor: Tensor;
  positions: number;
}
// One table per GPU and (base, ropeDim, factors); grown to the next power of two of positions as needed.
const tables = new WeakMap<Gpu, Map<string, CosSinTable>>();
// Factor arrays by identity (a model's config holds one for its lifetime).
const factorIds = new WeakMap<Float32Array, number>();
let nextFactorId = 1;

function cosSinTable(gpu: Gpu, ropeDim: number, base: number, positions: number, factors?: Float32Array): Tensor {
  let perGpu = tables.get(gpu);
  if (!perGpu) tables.set(gpu, perGpu = new Map());
  let fid = 0;
  if (factors) {
    fid = factorIds.get(factors) ?? nextFactorId++;
    factorIds.set(factors, fid);
  }
  const key = `${base}:${ropeDim}:${fid}`;
  const have = perGpu.get(key);
  if (have && have.positions >= positions) return have.tensor;
  const cap = Math.max(256, 2 ** Math.ceil(Math.log2(positions)));
  const half = ropeDim / 2;
  const data = new Float32Array(cap * half * 2);
  for (let pos = 0; pos < cap; pos++) {
    for (let i = 0; i < half; i++) {
      const th = ropeTheta(pos, i, ropeDim, base, factors?.[i] ?? 1);
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
  if (o.freqFactors) {
    check(o.freqFactors.length === o.ropeDim / 2 && o.freqFactors.every((f) => Number.isFinite(f) && f > 0), "KERNEL_ARGS",
      `rope: freqFactors must be ${o.ropeDim / 2} positive numbers, got ${o.freqFactors.length}`);
  }
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
  const cs = cosSinTable(gpu, o.ropeDim, o.base, o.pos0 + o.T, o.freqFactors);
  gpu.dispatch("rope", "main", {
    bindings: { x: out, cs },
    params: [o.N, o.T, o.pos0, o.nHeads, o.headDim, half, o.inverse ? 1 : 0, o.neox ? 1 : 0],
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
        const th = ropeTheta(pos, i, ropeDim, base, o.freqFactors?.[i] ?? 1);
        const c = Math.cos(th), s = o.inverse ? -Math.sin(th) : Math.sin(th);
        const [a, b] = ropePair(i, ropeDim, !!o.neox);
        const k0 = r * nHeads * D + h * D + a, k1 = r * nHeads * D + h * D + b;
        const x0 = x[k0], x1 = x[k1];
        y[k0] = x0 * c - x1 * s;
        y[k1] = x0 * s + x1 * c;
      }
    }
  }
  return y;
}
