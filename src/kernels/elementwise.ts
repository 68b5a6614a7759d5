/**
 * Flat elementwise ops on f32 tensors (shaders/elementwise.wgsl): add, axpy, scale, mul and
 * dropout with a counter-based mask, so the backward recomputes the mask instead of storing it.
 * Every op accepts `out` equal to an input (in place).
 */
import { check } from "../errors.ts";
import { f32, type Gpu, grid1d, type Tensor, UNUSED } from "../gpu/gpu.ts";
import { lowbias32 } from "./hash.ts";

function sameSize(op: string, a: Tensor, b: Tensor): void {
  check(a.dtype === "f32" && b.dtype === "f32", "ELEMENTWISE_ARGS", `${op}: tensors must be f32 (got ${a.dtype}, ${b.dtype})`);
  check(a.size === b.size, "ELEMENTWISE_SHAPE", `${op}: [${a.shape}] and [${b.shape}] differ in size`);
}

type Operand = Tensor | typeof UNUSED;

function run(gpu: Gpu, entry: string, x: Operand, y: Operand, z: Tensor, alpha: number, seed = 0, threshold = 0): void {
  gpu.dispatch("elementwise", entry, { bindings: { x, y, z }, params: [z.size, seed, threshold, f32(alpha)], workgroups: grid1d(z.size, 64) });
}

function output(gpu: Gpu, op: string, like: Tensor, out?: Tensor): Tensor {
  if (!out) return gpu.tensor(like.shape);
  sameSize(op, like, out);
  return out;
}

/** a + b (out may be a or b: in place). */
export function add(gpu: Gpu, a: Tensor, b: Tensor, out?: Tensor): Tensor {
  sameSize("add", a, b);
  const z = output(gpu, "add", a, out);
  if (z === a) run(gpu, "add_inplace", UNUSED, b, z, 1);
  else if (z === b) run(gpu, "add_inplace", UNUSED, a, z, 1);
  else run(gpu, "add", a, b, z, 1);
  return z;
}

/** y += alpha * x. */
export function axpy(gpu: Gpu, y: Tensor, x: Tensor, alpha: number): void {
  sameSize("axpy", y, x);
  check(Number.isFinite(alpha), "ELEMENTWISE_ARGS", `axpy: alpha = ${alpha} must be finite`);
  check(x !== y, "ELEMENTWISE_ARGS", "axpy: x and y must be different tensors (use scale for y *= 1 + alpha)");
  run(gpu, "add_inplace", UNUSED, x, y, alpha);
}

/** s * x (out may be x: in place). */
export function scale(gpu: Gpu, x: Tensor, s: number, out?: Tensor): Tensor {
  check(Number.isFinite(s), "ELEMENTWISE_ARGS", `scale: s = ${s} must be finite`);
  const z = output(gpu, "scale", x, out);
  if (z === x) run(gpu, "scale_inplace", UNUSED, UNUSED, z, s);
  else run(gpu, "scale", x, UNUSED, z, s);
  return z;
}

/** a * b elementwise (out may be a or b: in place). */
export function mul(gpu: Gpu, a: Tensor, b: Tensor, out?: Tensor): Tensor {
  sameSize("mul", a, b);
  const z = output(gpu, "mul", a, out);
  if (z === a) run(gpu, "mul_inplace", UNUSED, b, z, 1);
  else if (z === b) run(gpu, "mul_inplace", UNUSED, a, z, 1);
  else run(gpu, "mul", a, b, z, 1);
  return z;
}

function dropoutArgs(p: number, seed: number): { threshold: number; alpha: number } {
  check(p >= 0 && p < 1, "DROPOUT_ARGS", `dropout: p = ${p} must be in [0, 1)`);
  check(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff, "DROPOUT_ARGS", `dropout: seed = ${seed} must be a u32`);
  return { threshold: Math.min(0xffffffff, Math.floor(p * 2 ** 32)), alpha: 1 / (1 - p) };
}

/**
 * y = x * keep / (1 - p), keep = hash(seed, index) >= p·2³². The mask depends only on (seed, index):
 * `dropout(gpu, dy, p, seed)` with the forward's seed is the backward. out may be x (in place).
 */
export function dropout(gpu: Gpu, x: Tensor, p: number, seed: number, out?: Tensor): Tensor {
  const { threshold, alpha } = dropoutArgs(p, seed);
  check(x.dtype === "f32", "ELEMENTWISE_ARGS", `dropout: x must be f32 (got ${x.dtype})`);
  const z = output(gpu, "dropout", x, out);
  if (z === x) run(gpu, "dropout_inplace", UNUSED, UNUSED, z, alpha, seed, threshold);
  else run(gpu, "dropout", x, UNUSED, z, alpha, seed, threshold);
  return z;
}

// ------------------------------------------------------------ CPU references (f64 math)

export function addReference(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((v, i) => v + b[i]);
}
export function axpyReference(y: Float32Array, x: Float32Array, alpha: number): Float32Array {
  return y.map((v, i) => v + alpha * x[i]);
}
export function scaleReference(x: Float32Array, s: number): Float32Array {
  return x.map((v) => s * v);
}
export function mulReference(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((v, i) => v * b[i]);
}

/** The keep mask the GPU uses: 1 where element i survives dropout with (p, seed). */
export function dropoutMaskReference(n: number, p: number, seed: number): Uint8Array {
  const { threshold } = dropoutArgs(p, seed);
  const key = lowbias32((seed + 0x9e3779b9) >>> 0);
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) mask[i] = lowbias32((i ^ key) >>> 0) >= threshold ? 1 : 0;
  return mask;
}

export function dropoutReference(x: Float32Array, p: number, seed: number): Float32Array {
  const mask = dropoutMaskReference(x.length, p, seed);
  const alpha = Math.fround(1 / (1 - p));
  return x.map((v, i) => (mask[i] ? alpha * v : 0));
}
