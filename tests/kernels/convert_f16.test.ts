import assert from "node:assert/strict";
import { readF16Bits, toF16, toF16Reference, toF32, toF32Reference } from "../../src/kernels/convert_f16.ts";
import { f16ToF32 } from "../../src/io/bytes.ts";
import { PeftError } from "../../src/errors.ts";
import type { Gpu } from "../../src/gpu/gpu.ts";
import { randn, rng, testGpu } from "../helpers.ts";

const isNaNHalf = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;

/** f32 inputs covering every conversion case, as raw bits (so NaN payloads and -0 survive). */
function f32Cases(): Uint32Array {
  const vals: number[] = [];
  // Magnitudes across the normal range, the subnormal range (2^-24 .. 2^-14), underflow and overflow.
  for (const [scale, seed] of [[1, 1], [100, 2], [3e4, 3], [1e-5, 4], [3e-7, 5], [3e-8, 6], [1e-9, 7], [7e4, 8], [1e6, 9]]) {
    for (const v of randn(257, seed, scale)) vals.push(v);
  }
  // Exact ties between neighbouring halves (round-half-to-even), normal and subnormal, and ±1 ulp around them.
  const r = rng(11);
  const ties: number[] = [];
  for (let i = 0; i < 300; i++) {
    const h = Math.floor(r() * 0x7bff); // h and h+1 both finite
    ties.push((f16ToF32(h) + f16ToF32(h + 1)) / 2);
  }
  for (let h = 0; h < 40; h++) ties.push((f16ToF32(h) + f16ToF32(h + 1)) / 2); // smallest subnormals
  ties.push(2 ** -25, 3 * 2 ** -26, 2 ** -26); // half the smallest subnormal rounds to 0
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (const t of ties) {
    f[0] = t;
    const b = u[0];
    for (const d of [-1, 0, 1]) for (const s of [0, 0x80000000]) vals.push(new Float32Array(new Uint32Array([(b + d) ^ s]).buffer)[0]);
  }
  vals.push(0, -0, Infinity, -Infinity, 65504, -65504, 65519.99, 65520, -65520, 6.1035156e-5, 6.0975552e-5, 5.9604645e-8, 2.9802322e-8, 1e-45, -1e-45, 1.1754942e-38);
  const out = new Uint32Array(vals.length + 2000 + 3);
  new Float32Array(out.buffer, 0, vals.length).set(vals);
  // Random bit patterns: every exponent, f32 subnormals, NaNs with payloads of both signs.
  for (let i = 0; i < 2000; i++) out[vals.length + i] = (Math.floor(r() * 0x10000) << 16 | Math.floor(r() * 0x10000)) >>> 0;
  out.set([0x7fc00000, 0xffc00001, 0x7f800001], vals.length + 2000);
  return out;
}

Deno.test("toF16: bit-exact with f32ToF16 (RNE, ties, subnormals, overflow to inf, ±0, NaN), odd lengths", async () => {
  const gpu = await testGpu();
  if (!gpu.info.features.f16) return assertUnsupported(gpu);
  const bits = f32Cases();
  const host = new Float32Array(bits.buffer);
  for (const n of [1, 2, 3, 17, 65, host.length]) {
    const x = gpu.upload(bits.subarray(0, n), [n], "f32");
    const h = toF16(gpu, x);
    assert.equal(h.dtype, "f16");
    assert.deepEqual(h.shape, [n]);
    const got = await readF16Bits(gpu, h);
    const want = toF16Reference(host.subarray(0, n));
    let bad = 0;
    for (let i = 0; i < n; i++) {
      const ok = isNaNHalf(want[i]) ? isNaNHalf(got[i]) : got[i] === want[i];
      if (!ok && bad++ < 5) console.error(`x bits 0x${bits[i].toString(16)} (${host[i]}): got 0x${got[i].toString(16)} want 0x${want[i].toString(16)}`);
    }
    assert.equal(bad, 0, `toF16 n=${n}: ${bad} mismatches`);
    x.release(), h.release();
  }
});

Deno.test("toF32: every one of the 65536 halves widens exactly (subnormals, ±0, ±inf, NaN)", async () => {
  const gpu = await testGpu();
  if (!gpu.info.features.f16) return assertUnsupported(gpu);
  for (const n of [65536, 1, 3, 33]) {
    const halves = new Uint16Array(n);
    for (let i = 0; i < n; i++) halves[i] = n === 65536 ? i : (i * 7919 + 0x3c00) & 0xffff;
    const h = gpu.upload(halves, [n]);
    const y = toF32(gpu, h);
    assert.equal(y.dtype, "f32");
    const got = await gpu.readF32(y);
    const want = toF32Reference(halves);
    const gb = new Uint32Array(got.buffer, got.byteOffset, n), wb = new Uint32Array(want.buffer, want.byteOffset, n);
    let bad = 0;
    for (let i = 0; i < n; i++) {
      const ok = Number.isNaN(want[i]) ? Number.isNaN(got[i]) : gb[i] === wb[i];
      if (!ok && bad++ < 5) console.error(`half 0x${halves[i].toString(16)}: got ${got[i]} want ${want[i]}`);
    }
    assert.equal(bad, 0, `toF32 n=${n}: ${bad} mismatches`);
    h.release(), y.release();
  }
});

Deno.test("toF32(toF16(x)) matches the host round trip; shape and category kept", async () => {
  const gpu = await testGpu();
  if (!gpu.info.features.f16) return assertUnsupported(gpu);
  const host = randn(3 * 5 * 7, 21, 10);
  const x = gpu.upload(host, [3, 5, 7]);
  const h = toF16(gpu, x, "activations");
  const y = toF32(gpu, h);
  assert.deepEqual(h.shape, [3, 5, 7]);
  assert.equal(h.category, "activations");
  assert.deepEqual(y.shape, [3, 5, 7]);
  assert.deepEqual(await gpu.readF32(y), toF32Reference(toF16Reference(host)));
  x.release(), h.release(), y.release();
});

Deno.test("toF16/toF32: wrong dtypes raise PeftError; no shader-f16 raises UNSUPPORTED", async () => {
  const gpu = await testGpu();
  // The UNSUPPORTED path, checked on every device by hiding the feature.
  assertUnsupported(withoutF16(gpu));
  if (!gpu.info.features.f16) return assertUnsupported(gpu);
  const a = gpu.tensor([4]), h = gpu.tensor([4], "f16");
  assert.throws(() => toF16(gpu, h), (e: unknown) => e instanceof PeftError && /must be f32/.test(e.message));
  assert.throws(() => toF32(gpu, a), (e: unknown) => e instanceof PeftError && /must be f16/.test(e.message));
  a.release(), h.release();
});

/** The same Gpu seen through an info that says shader-f16 is off. */
function withoutF16(gpu: Gpu): Gpu {
  const info = { ...gpu.info, features: { ...gpu.info.features, f16: false } };
  return Object.create(gpu, { info: { value: info } });
}

function assertUnsupported(gpu: Gpu): void {
  const x = gpu.tensor([4]), h = gpu.tensor([4], "f16");
  const unsupported = (e: unknown) => e instanceof PeftError && e.code === "UNSUPPORTED" && /shader-f16/.test(e.message);
  assert.throws(() => toF16(gpu, x), unsupported);
  assert.throws(() => toF32(gpu, h), unsupported);
  x.release(), h.release();
}
