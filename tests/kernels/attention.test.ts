import assert from "node:assert/strict";
import type { Gpu, Tensor } from "../../src/gpu/gpu.ts";
import { attention, attentionBackward, attentionBackwardReference, attentionReference, type AttentionOptions } from "../../src/kernels/attention.ts";
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

const BACKWARD_CASES: AttentionOptions[] = [
  { B: 1, T: 5, S: 5, pos0: 0, nHeads: 8, nKvHeads: 4, headDim: 8 },
  { B: 2, T: 17, S: 17, pos0: 0, nHeads: 6, nKvHeads: 2, headDim: 16 },
  { B: 2, T: 5, S: 8, kvStride: 11, pos0: 3, nHeads: 4, nKvHeads: 4, headDim: 64 },
  // 40 queries x 2 heads per kv head = 80 (query, head) pairs for key 0: two chunks in dkv_rows;
  // 70 keys for the last query: two chunks in dq_rows
  { B: 1, T: 40, S: 70, kvStride: 72, pos0: 30, nHeads: 4, nKvHeads: 2, headDim: 8 },
  { B: 1, T: 3, S: 3, pos0: 0, nHeads: 2, nKvHeads: 2, headDim: 72 },
];

Deno.test("attention backward matches the f64 reference; masked and padding keys get exactly zero", async () => {
  const gpu = await testGpu();
  for (const [i, o] of BACKWARD_CASES.entries()) {
    const h = makeInputs(o, 100 + 10 * i);
    const doutH = randn(o.B * o.T * o.nHeads * o.headDim, 7 + i);
    const t = upload(gpu, h, o);
    const dout = gpu.upload(doutH, t.q.shape, "f32", "activations");
    const { out, lse } = attention(gpu, t.q, t.k, t.v, { ...o, saveLse: true });
    const g = attentionBackward(gpu, dout, t.q, t.k, t.v, out, lse!, o);
    const ref = attentionBackwardReference(h, doutH, o);
    const [dq, dk, dv] = [await gpu.readF32(g.dq), await gpu.readF32(g.dk), await gpu.readF32(g.dv)];
    const kvStride = o.kvStride ?? o.S;
    assert.deepEqual(g.dk.shape, [o.B * kvStride, o.nKvHeads * o.headDim]);
    // f32 sums of up to ~100 products of O(1) terms
    assertClose(dq, ref.dq, 2e-5, 1e-4, `dq case ${i}`);
    assertClose(dk, ref.dk, 2e-5, 1e-4, `dk case ${i}`);
    assertClose(dv, ref.dv, 2e-5, 1e-4, `dv case ${i}`);
    // cache rows past S (NaN in k/v) get exactly zero, not NaN
    const W = o.nKvHeads * o.headDim;
    for (let b = 0; b < o.B; b++) {
      for (let j = o.S; j < kvStride; j++) {
        for (let e = 0; e < W; e++) {
          const at = (b * kvStride + j) * W + e;
          assert.ok(dk[at] === 0 && dv[at] === 0, `case ${i}: padding row ${j} has gradient`);
        }
      }
    }
    // deterministic: a second run is bitwise identical
    const g2 = attentionBackward(gpu, dout, t.q, t.k, t.v, out, lse!, o);
    assert.deepEqual(await gpu.readF32(g2.dk), dk, `case ${i}: dk not deterministic`);
    assert.deepEqual(await gpu.readF32(g2.dq), dq, `case ${i}: dq not deterministic`);
    for (const x of [t.q, t.k, t.v, dout, out, lse!, g.dq, g.dk, g.dv, g2.dq, g2.dk, g2.dv]) x.release();
  }
});

Deno.test("attention backward agrees with central finite differences of sum(out * R)", async () => {
  const gpu = await testGpu();
  const o: AttentionOptions = { B: 2, T: 3, S: 4, kvStride: 5, pos0: 1, nHeads: 4, nKvHeads: 2, headDim: 8 };
  const h = makeInputs(o, 3);
  const R = randn(o.B * o.T * o.nHeads * o.headDim, 4);
  const loss = async (x: { q: Float32Array; k: Float32Array; v: Float32Array }) => {
    const t = upload(gpu, x, o);
    const { out } = attention(gpu, t.q, t.k, t.v, o);
    const y = await gpu.readF32(out);
    for (const z of [t.q, t.k, t.v, out]) z.release();
    return y.reduce((s, v, i) => s + v * R[i], 0);
  };
  const t = upload(gpu, h, o);
  const dout = gpu.upload(R, t.q.shape, "f32", "activations");
  const { out, lse } = attention(gpu, t.q, t.k, t.v, { ...o, saveLse: true });
  const g = attentionBackward(gpu, dout, t.q, t.k, t.v, out, lse!, o);
  const grads = { q: await gpu.readF32(g.dq), k: await gpu.readF32(g.dk), v: await gpu.readF32(g.dv) };
  const W = o.nKvHeads * o.headDim; // 16 floats per kv row; rows 0..3 of each sequence are real
  const picks: Record<"q" | "k" | "v", number[]> = {
    q: [0, 9, 37, 100, 150, 191],
    k: [0, 3 * W + 5, 5 * W + 17, 8 * W + 15, 3 * W + 9],
    v: [2, 2 * W + 8, 5 * W + 1, 7 * W + 12, 8 * W],
  };
  const step = 1e-2;
  for (const which of ["q", "k", "v"] as const) {
    for (const i of picks[which]) {
      const p = { ...h, [which]: Float32Array.from(h[which]) }, m = { ...h, [which]: Float32Array.from(h[which]) };
      p[which][i] += step;
      m[which][i] -= step;
      const fd = (await loss(p) - await loss(m)) / (p[which][i] - m[which][i]);
      // f32 forward noise ~1e-6/(2*step) plus O(step^2) curvature
      assert.ok(Math.abs(fd - grads[which][i]) < 3e-3, `d${which}[${i}]: fd ${fd} vs ${grads[which][i]}`);
    }
  }
  // key 3 of sequence 0 is seen only by the last query (position 3), which must still give it a gradient
  assert.ok(grads.k.slice(3 * W, 4 * W).some((v) => v !== 0));
  for (const x of [t.q, t.k, t.v, dout, out, lse!, g.dq, g.dk, g.dv]) x.release();
});

/** Dense masked attention in f64 (one score matrix per head, -inf outside the window): independent of the references. */
function denseWindowed(h: { q: Float32Array; k: Float32Array; v: Float32Array }, o: AttentionOptions): Float64Array {
  const kvStride = o.kvStride ?? o.S, D = o.headDim, Hq = o.nHeads, Hkv = o.nKvHeads, W = o.window ?? 0;
  const out = new Float64Array(o.B * o.T * Hq * D);
  for (let b = 0; b < o.B; b++) {
    for (let t = 0; t < o.T; t++) {
      const pos = o.pos0 + t;
      for (let hh = 0; hh < Hq; hh++) {
        const g = Math.floor(hh / (Hq / Hkv));
        const s = Array.from({ length: o.S }, (_, j) => {
          if (j > pos || (W > 0 && pos - j >= W)) return -Infinity;
          let dot = 0;
          for (let e = 0; e < D; e++) dot += h.q[((b * o.T + t) * Hq + hh) * D + e] * h.k[((b * kvStride + j) * Hkv + g) * D + e];
          return dot / Math.sqrt(D);
        });
        const m = Math.max(...s);
        const p = s.map((x) => Math.exp(x - m));
        const z = p.reduce((a, c) => a + c, 0);
        for (let e = 0; e < D; e++) {
          let a = 0;
          for (let j = 0; j < o.S; j++) if (p[j] > 0) a += p[j] / z * h.v[((b * kvStride + j) * Hkv + g) * D + e];
          out[((b * o.T + t) * Hq + hh) * D + e] = a;
        }
      }
    }
  }
  return out;
}

const WINDOW_CASES: AttentionOptions[] = [
  { B: 2, T: 9, S: 9, pos0: 0, nHeads: 4, nKvHeads: 2, headDim: 8, window: 3 }, // training rows
  { B: 1, T: 4, S: 11, kvStride: 13, pos0: 7, nHeads: 2, nKvHeads: 1, headDim: 16, window: 5 }, // chunked prefill over a cache
  { B: 1, T: 1, S: 150, kvStride: 160, pos0: 149, nHeads: 2, nKvHeads: 2, headDim: 8, window: 70 }, // decode, window spans 2 chunks
  { B: 1, T: 70, S: 70, pos0: 0, nHeads: 2, nKvHeads: 1, headDim: 8, window: 1 }, // each query sees itself only
  { B: 1, T: 5, S: 5, pos0: 0, nHeads: 2, nKvHeads: 1, headDim: 8, window: 64 }, // window wider than the sequence: plain causal
];

Deno.test("attention with a sliding window: forward equals dense masked attention and the reference; window >= S is causal", async () => {
  const gpu = await testGpu();
  for (const [i, o] of WINDOW_CASES.entries()) {
    const h = makeInputs(o, 300 + i);
    const t = upload(gpu, h, o);
    const { out, lse } = attention(gpu, t.q, t.k, t.v, { ...o, saveLse: true });
    const got = await gpu.readF32(out);
    assertClose(got, denseWindowed(h, o), 1e-5, 1e-5, `windowed vs dense, case ${i}`);
    const ref = attentionReference(h, o);
    assertClose(got, ref.out, 1e-5, 1e-5, `windowed vs reference, case ${i}`);
    assertClose(await gpu.readF32(lse!), ref.lse, 1e-5, 1e-5, `lse case ${i}`);
    const causal = attentionReference(h, { ...o, window: 0 }).out;
    if (o.window! >= o.S) assertClose(got, causal, 1e-5, 1e-5, "a window wider than the keys changes nothing");
    else assert.ok(causal.some((v, k) => Math.abs(v - got[k]) > 1e-3), `case ${i}: the window masks something`);
    for (const x of [t.q, t.k, t.v, out, lse!]) x.release();
  }
  const q = gpu.tensor([1, 8]);
  assert.throws(() => attention(gpu, q, q, q, { B: 1, T: 1, S: 1, pos0: 0, nHeads: 1, nKvHeads: 1, headDim: 8, window: -1 }), /window must be an integer >= 0/);
  q.release();
});

Deno.test("attention backward with a sliding window: reference, exact zeros outside every window, finite differences", async () => {
  const gpu = await testGpu();
  for (const [i, o] of WINDOW_CASES.slice(0, 4).entries()) {
    const h = makeInputs(o, 400 + i);
    const doutH = randn(o.B * o.T * o.nHeads * o.headDim, 17 + i);
    const t = upload(gpu, h, o);
    const dout = gpu.upload(doutH, t.q.shape, "f32", "activations");
    const { out, lse } = attention(gpu, t.q, t.k, t.v, { ...o, saveLse: true });
    const g = attentionBackward(gpu, dout, t.q, t.k, t.v, out, lse!, o);
    const ref = attentionBackwardReference(h, doutH, o);
    const [dq, dk, dv] = [await gpu.readF32(g.dq), await gpu.readF32(g.dk), await gpu.readF32(g.dv)];
    assertClose(dq, ref.dq, 2e-5, 1e-4, `dq case ${i}`);
    assertClose(dk, ref.dk, 2e-5, 1e-4, `dk case ${i}`);
    assertClose(dv, ref.dv, 2e-5, 1e-4, `dv case ${i}`);
    // keys before the first query's window see no query: exactly zero (case 1: position 7, window 5: keys 0..2)
    if (i === 1) for (let e = 0; e < 3 * 16; e++) assert.ok(dk[e] === 0 && dv[e] === 0, `key row ${Math.floor(e / 16)} outside every window`);
    for (const x of [t.q, t.k, t.v, dout, out, lse!, g.dq, g.dk, g.dv]) x.release();
  }
  // central differences on a small windowed case
  const o: AttentionOptions = { B: 1, T: 6, S: 6, pos0: 0, nHeads: 2, nKvHeads: 1, headDim: 8, window: 2 };
  const h = makeInputs(o, 7);
  const R = randn(6 * 16, 8);
  const loss = (x: { q: Float32Array; k: Float32Array; v: Float32Array }) => attentionReference(x, o).out.reduce((s, v, i) => s + v * R[i], 0);
  const t = upload(gpu, h, o);
  const dout = gpu.upload(R, t.q.shape, "f32", "activations");
  const { out, lse } = attention(gpu, t.q, t.k, t.v, { ...o, saveLse: true });
  const g = attentionBackward(gpu, dout, t.q, t.k, t.v, out, lse!, o);
  const grads = { q: await gpu.readF32(g.dq), k: await gpu.readF32(g.dk), v: await gpu.readF32(g.dv) };
  for (const which of ["q", "k", "v"] as const) {
    for (const i of [0, 5, 13, 21, 30, 40, 47]) {
      const p = { ...h, [which]: Float32Array.from(h[which]) }, m = { ...h, [which]: Float32Array.from(h[which]) };
      p[which][i] += 1e-2;
      m[which][i] -= 1e-2;
      const fd = (loss(p) - loss(m)) / (p[which][i] - m[which][i]);
      assert.ok(Math.abs(fd - grads[which][i]) < 1e-3, `d${which}[${i}]: fd ${fd} vs ${grads[which][i]}`);
    }
  }
  for (const x of [t.q, t.k, t.v, dout, out, lse!, g.dq, g.dk, g.dv]) x.release();
});
