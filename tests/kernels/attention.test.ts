import assert from "node:assert/strict";
import type { Gpu, Tensor } from "../../src/gpu/gpu.ts";
import { attention, attentionReference, type AttentionOptions } from "../../src/kernels/attention.ts";
import { assertClose, randn, testGpu } from "../helpers.ts";

/** Random q/k/v for `o`; K/V rows past S in each sequence are NaN, so reading them would show. */
function makeInputs(o: AttentionOptions, seed: number, qScale = 1) {
  const kvStride = o.kvStride ?? o.S;
  const D = o.headDim;
  const q = randn(o.B * o.T * o.nHeads * D, seed, qScale);
  const k = randn(o.B * kvStride * o.nKvHeads * D, seed + 1);
  const v = randn(o.B * kvStride * o.nKvHeads * D, seed + 2);
  for (let b = 0; b < o.B; b++) {
    for (let j = o.S; j < kvStride; j++) {
      const row = (b * kvStride + j) * o.nKvHeads * D;
      k.fill(NaN, row, row + o.nKvHeads * D);
      v.fill(NaN, row, row + o.nKvHeads * D);
    }
  }
  return { q, k, v };
}

function upload(gpu: Gpu, h: { q: Float32Array; k: Float32Array; v: Float32Array }, o: AttentionOptions): { q: Tensor; k: Tensor; v: Tensor } {
  const kvRows = o.B * (o.kvStride ?? o.S);
  return {
    q: gpu.upload(h.q, [o.B * o.T, o.nHeads * o.headDim], "f32", "activations"),
    k: gpu.upload(h.k, [kvRows, o.nKvHeads * o.headDim], "f32", "kv_cache"),
    v: gpu.upload(h.v, [kvRows, o.nKvHeads * o.headDim], "f32", "kv_cache"),
  };
}

const base = { pos0: 0 };
const FORWARD_CASES: AttentionOptions[] = [
  { ...base, B: 1, T: 5, S: 5, nHeads: 8, nKvHeads: 4, headDim: 8 }, // stories260K heads
  { ...base, B: 3, T: 17, S: 17, nHeads: 6, nKvHeads: 2, headDim: 16 },
  { B: 2, T: 5, S: 8, kvStride: 11, pos0: 3, nHeads: 4, nKvHeads: 4, headDim: 64 }, // chunked prefill over a cache
  { B: 1, T: 1, S: 71, kvStride: 80, pos0: 70, nHeads: 8, nKvHeads: 4, headDim: 8 }, // decode past one 64-key chunk
  { B: 1, T: 3, S: 130, kvStride: 130, pos0: 127, nHeads: 2, nKvHeads: 1, headDim: 128 }, // D = 128, 3 chunks
  { B: 2, T: 1, S: 1, pos0: 0, nHeads: 3, nKvHeads: 1, headDim: 72 }, // single key, D not a multiple of 64
];

Deno.test("attention forward matches the f64 reference (GQA, caches, decode, D 8..128)", async () => {
  const gpu = await testGpu();
  for (const [i, o] of FORWARD_CASES.entries()) {
    const h = makeInputs(o, 10 * i + 1);
    const t = upload(gpu, h, o);
    const { out, lse } = attention(gpu, t.q, t.k, t.v, { ...o, saveLse: true });
    const ref = attentionReference(h, o);
    const got = await gpu.readF32(out);
    assert.ok(got.every(Number.isFinite), `case ${i}: masked NaN rows leaked`);
    // softmax-weighted sums of N(0,1) values in f32: ~1e-6
    assertClose(got, ref.out, 1e-5, 1e-5, `out case ${i}`);
    assertClose(await gpu.readF32(lse!), ref.lse, 1e-5, 1e-5, `lse case ${i}`);
    for (const x of [t.q, t.k, t.v, out, lse!]) x.release();
  }
});

Deno.test("attention forward: long context (S = 2048) and large scores stay stable", async () => {
  const gpu = await testGpu();
  for (const o of [
    { B: 1, T: 1, S: 2048, kvStride: 2100, pos0: 2047, nHeads: 4, nKvHeads: 2, headDim: 8 },
    { B: 1, T: 4, S: 2051, kvStride: 2051, pos0: 2047, nHeads: 2, nKvHeads: 1, headDim: 16 },
  ] as AttentionOptions[]) {
    const h = makeInputs(o, 77, 12); // scores up to ~100: exp overflows without max subtraction
    const t = upload(gpu, h, o);
    const { out, lse } = attention(gpu, t.q, t.k, t.v, { ...o, saveLse: true });
    const ref = attentionReference(h, o);
    assertClose(await gpu.readF32(out), ref.out, 2e-5, 1e-5, `out S=${o.S}`);
    assertClose(await gpu.readF32(lse!), ref.lse, 1e-4, 1e-5, `lse S=${o.S}`);
    for (const x of [t.q, t.k, t.v, out, lse!]) x.release();
  }
});

Deno.test("attention: a decode step equals the last row of the full prefill", async () => {
  const gpu = await testGpu();
  const T = 9, cap = 16, Hq = 8, Hkv = 4, D = 8, W = Hq * D;
  const prefill: AttentionOptions = { B: 1, T, S: T, kvStride: cap, pos0: 0, nHeads: Hq, nKvHeads: Hkv, headDim: D };
  const h = makeInputs(prefill, 5);
  const t = upload(gpu, h, prefill);
  const full = await gpu.readF32(attention(gpu, t.q, t.k, t.v, prefill).out);
  const qLast = gpu.upload(h.q.slice((T - 1) * W, T * W), [1, W], "f32", "activations");
  const step = await gpu.readF32(attention(gpu, qLast, t.k, t.v, { ...prefill, T: 1, pos0: T - 1 }).out);
  assertClose(step, full.subarray((T - 1) * W), 1e-6, 0, "decode vs prefill last row");
  // and an earlier prefix: query 3 of the prefill = decode at pos0 = 3 with S = 4
  const q3 = gpu.upload(h.q.slice(3 * W, 4 * W), [1, W], "f32", "activations");
  const step3 = await gpu.readF32(attention(gpu, q3, t.k, t.v, { ...prefill, T: 1, pos0: 3, S: 4 }).out);
  assertClose(step3, full.subarray(3 * W, 4 * W), 1e-6, 0, "decode at pos 3");
  for (const x of [t.q, t.k, t.v, qLast, q3]) x.release();
});

Deno.test("attention: bad options are reported", async () => {
  const gpu = await testGpu();
  const q = gpu.tensor([2, 16]), k = gpu.tensor([2, 8]);
  const o = { B: 1, T: 2, S: 2, pos0: 0, nHeads: 2, nKvHeads: 1, headDim: 8 };
  assert.throws(() => attention(gpu, q, k, k, { ...o, nKvHeads: 3, nHeads: 4 }), /nHeads=4 is not a multiple of nKvHeads=3/);
  assert.throws(() => attention(gpu, q, k, k, { ...o, kvStride: 1 }), /kvStride=1 must be >= S=2/);
  assert.throws(() => attention(gpu, q, k, k, { ...o, S: 3 }), /attention k: tensor \[2,8\] has 16 elements, needs 24/);
  assert.throws(() => attention(gpu, q, k, k, { ...o, headDim: 512, nHeads: 1 }), /headDim=512 is over/);
  q.release();
  k.release();
});
