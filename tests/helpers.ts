/** Shared test helpers: one GPU per test process, seeded random data, tolerance checks. */
import assert from "node:assert/strict";
import { PeftError } from "../src/errors.ts";
import { Gpu } from "../src/gpu/gpu.ts";
import { seededRandom } from "../src/infer/sampler.ts";
import { f32ToF16 } from "../src/io/bytes.ts";
import { GGML, GGML_HALF_FIELDS, GGML_TYPES } from "../src/io/ggml_quants.ts";

let shared: Promise<Gpu> | null = null;
/** One device per test process (creating devices repeatedly is slow on lavapipe). */
export function testGpu(): Promise<Gpu> {
  return shared ??= Gpu.create();
}

export const SHARED = new URL("../../shared/", import.meta.url).pathname;
export const STORIES = `${SHARED}models/stories260K/stories260K.gguf`;

/** Deterministic PRNG for test data (the sampler's mulberry32). */
export const rng: (seed: number) => () => number = seededRandom;

export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12), v = r();
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

/** max |a-b| */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Asserts max |a-b| <= atol + rtol * max|b|. */
export function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, atol: number, rtol = 0, what = "values"): void {
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  const d = maxAbsDiff(a, b);
  if (!(d <= atol + rtol * scale)) {
    throw new Error(`${what}: max abs diff ${d} > ${atol} + ${rtol}*${scale}`);
  }
}

/** The four operand layouts of a matmul (op(A) = A or Aᵀ, op(B) = B or Bᵀ). */
export const MATMUL_LAYOUTS = [
  { transA: false, transB: false },
  { transA: false, transB: true },
  { transA: true, transB: false },
  { transA: true, transB: true },
];

/** The lora_B tensors of an adapter (to make it non-trivial, "as if trained"). */
export function loraBs(a: { params: Map<string, { value: import("../src/gpu/gpu.ts").Tensor }> }): import("../src/gpu/gpu.ts").Tensor[] {
  return [...a.params].filter(([k]) => k.endsWith("lora_B.weight")).map(([, p]) => p.value);
}

/** The parts (e.g. encodeGGUF's) as one byte array. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.byteLength) - p.byteLength);
  return out;
}

/**
 * `blocks` blocks of ggml type `type` with random bytes (every quant bit pattern) and random
 * finite f16 scales, 10% of them subnormal; BF16: `blocks` random normal values.
 */
export function randomGgmlBytes(type: number, blocks: number, seed: number): Uint8Array {
  const r = rng(seed);
  if (type === GGML.BF16) return new Uint8Array(Uint16Array.from({ length: blocks }, () => randomBf16(r)).buffer);
  const size = GGML_TYPES.get(type)!.typeSize;
  const bytes = Uint8Array.from({ length: blocks * size }, () => Math.floor(r() * 256));
  const view = new DataView(bytes.buffer);
  for (let b = 0; b < blocks; b++) {
    for (const o of GGML_HALF_FIELDS[type]) {
      const mag = r() < 0.1 ? r() * 6e-5 : 2 ** (r() * 30 - 20);
      view.setUint16(b * size + o, f32ToF16(r() < 0.5 ? -mag : mag), true);
    }
  }
  return bytes;
}

/** bf16 bits of a random normal value in ±[2^-20, 2^10). */
function randomBf16(r: () => number): number {
  const exp = 127 - 20 + Math.floor(r() * 30);
  return ((r() < 0.5 ? 0x8000 : 0) | (exp << 7) | Math.floor(r() * 128)) & 0xffff;
}

/** An assert.throws/rejects matcher: a PeftError of `code` whose message mentions every part. */
export function isErr(code: string, ...parts: string[]) {
  return (e: unknown) => {
    assert.ok(e instanceof PeftError, `expected PeftError, got ${e}`);
    assert.equal(e.code, code, e.message);
    for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" should mention "${p}"`);
    return true;
  };
}
