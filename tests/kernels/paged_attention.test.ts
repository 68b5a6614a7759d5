/**
 * Paged attention and its K/V scatter, rope with per-row positions, and the mixed-adapter LoRA
 * kernel against their CPU references on awkward shapes (1, 3, 17 rows; odd head counts, GQA,
 * blocks of 1 and 5 rows, tables in scrambled order), and paged attention against the contiguous
 * attention kernel bit for bit (the batched server must equal the one-at-a-time one).
 */
import assert from "node:assert/strict";
import { attention } from "../../src/kernels/attention.ts";
import { type LoraEntry, loraGather, loraGatherReference } from "../../src/kernels/lora_gather.ts";
import {
  pagedAttention,
  pagedAttentionReference,
  type PagedLayout,
  pagedWriteKv,
  pagedWriteKvReference,
} from "../../src/kernels/paged_attention.ts";
import { rope } from "../../src/kernels/rope.ts";
import { ropeRows, ropeRowsReference } from "../../src/kernels/rope_rows.ts";
import { PeftError } from "../../src/errors.ts";
import { rowSamplingParams, sampleReference, sampleRowsOnGpu } from "../../src/kernels/sample.ts";
import { assertClose, randn, rng, testGpu } from "../helpers.ts";

/** Sequences of the given lengths laid out in a pool of scrambled blocks; query rows = the last `q[i]` positions of each. */
function layout(lengths: number[], q: number[], blockSize: number, seed: number): { l: PagedLayout; poolBlocks: number } {
  const need = lengths.map((n) => Math.ceil(n / blockSize));
  const total = need.reduce((a, b) => a + b, 0) + 2; // two spare blocks never referenced
  const ids = Array.from({ length: total }, (_, i) => i);
  const r = rng(seed);
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  let k = 0;
  const tables = need.map((n) => ids.slice(k, k += n));
  const seq: number[] = [], pos: number[] = [];
  lengths.forEach((n, s) => {
    for (let t = n - q[s]; t < n; t++) seq.push(s), pos.push(t);
  });
  return { l: { blockSize, seq, pos, tables }, poolBlocks: total };
}

const HEADS = [
  { nHeads: 1, nKvHeads: 1, headDim: 1 },
  { nHeads: 3, nKvHeads: 3, headDim: 17 },
  { nHeads: 8, nKvHeads: 2, headDim: 8 },
  { nHeads: 4, nKvHeads: 1, headDim: 130 },
  { nHeads: 4, nKvHeads: 2, headDim: 8, window: 6 }, // Mistral/Phi-3 sliding window (rows past it and within it)
  { nHeads: 2, nKvHeads: 2, headDim: 5, window: 65 }, // a window over more than one 64-key chunk
];
const BATCHES = [
  { lengths: [1], q: [1], blockSize: 1 },
  { lengths: [17, 3, 70], q: [17, 1, 1], blockSize: 5 }, // a prefill segment beside two decode rows
  { lengths: [3, 3, 3], q: [1, 3, 2], blockSize: 16 },
];

Deno.test("paged attention and write_kv equal their CPU references (awkward shapes, GQA, scrambled blocks)", async () => {
  const gpu = await testGpu();
  let seed = 1;
  for (const h of HEADS) {
    for (const b of BATCHES) {
      const { l, poolBlocks } = layout(b.lengths, b.q, b.blockSize, seed++);
      const kvW = h.nKvHeads * h.headDim, R = l.seq.length;
      const kcH = randn(poolBlocks * b.blockSize * kvW, seed++), vcH = randn(poolBlocks * b.blockSize * kvW, seed++);
      const knewH = randn(R * kvW, seed++), vnewH = randn(R * kvW, seed++), qH = randn(R * h.nHeads * h.headDim, seed++);
      const kc = gpu.upload(kcH, [poolBlocks * b.blockSize, kvW], "f32", "kv_cache");
      const vc = gpu.upload(vcH, [poolBlocks * b.blockSize, kvW], "f32", "kv_cache");
      const knew = gpu.upload(knewH, [R, kvW], "f32", "activations"), vnew = gpu.upload(vnewH, [R, kvW], "f32", "activations");
      const q = gpu.upload(qH, [R, h.nHeads * h.headDim], "f32", "activations");
      pagedWriteKv(gpu, knew, vnew, kc, vc, l, h);
      pagedWriteKvReference(knewH, vnewH, kcH, vcH, l, h);
      assert.deepEqual(await gpu.readF32(kc), kcH, "k cache after write_kv");
      assert.deepEqual(await gpu.readF32(vc), vcH, "v cache after write_kv");
      const out = pagedAttention(gpu, q, kc, vc, l, h);
      assertClose(
        await gpu.readF32(out),
        pagedAttentionReference(qH, kcH, vcH, l, h),
        2e-6,
        2e-6,
        `paged attention ${JSON.stringify(h)} ${JSON.stringify(b)}`,
      );
      for (const t of [kc, vc, knew, vnew, q, out]) t.release();
    }
  }
});

Deno.test("paged attention equals the contiguous attention kernel bit for bit (a decode row at position 40 of a cache in 3 blocks, with and without a window)", async () => {
  const gpu = await testGpu();
  for (const window of [0, 7]) {
    const h = { nHeads: 8, nKvHeads: 8, headDim: 8, window }, kvW = 64, S = 41, bs = 16;
    const kH = randn(S * kvW, 70), vH = randn(S * kvW, 71), qH = randn(h.nHeads * h.headDim, 72);
    const k = gpu.upload(kH, [S, kvW], "f32", "activations"), v = gpu.upload(vH, [S, kvW], "f32", "activations");
    const q = gpu.upload(qH, [1, 64], "f32", "activations");
    const ref = attention(gpu, q, k, v, { B: 1, T: 1, S, kvStride: S, pos0: S - 1, ...h });
    // The same keys in blocks 4, 0, 2 of a pool of 5.
    const tables = [[4, 0, 2]];
    const pool = new Float32Array(5 * bs * kvW), vpool = new Float32Array(5 * bs * kvW);
    for (let j = 0; j < S; j++) {
      const dst = (tables[0][Math.floor(j / bs)] * bs + (j % bs)) * kvW;
      pool.set(kH.subarray(j * kvW, (j + 1) * kvW), dst);
      vpool.set(vH.subarray(j * kvW, (j + 1) * kvW), dst);
    }
    const kc = gpu.upload(pool, [5 * bs, kvW], "f32", "kv_cache"), vc = gpu.upload(vpool, [5 * bs, kvW], "f32", "kv_cache");
    const out = pagedAttention(gpu, q, kc, vc, { blockSize: bs, seq: [0], pos: [S - 1], tables }, h);
    assert.deepEqual(await gpu.readF32(out), await gpu.readF32(ref.out), `window ${window}`);
    for (const t of [k, v, q, kc, vc, out, ref.out]) t.release();
  }
});

Deno.test("paged attention refuses a row past its blocks and an unknown sequence", () => {
  const gpuless = async (l: PagedLayout) => {
    const gpu = await testGpu();
    const t = gpu.tensor([8, 8]);
    try {
      assert.throws(
        () => pagedAttention(gpu, t, t, t, l, { nHeads: 1, nKvHeads: 1, headDim: 8 }),
        (e) => e instanceof PeftError && e.code === "KERNEL_ARGS",
      );
    } finally {
      t.release();
    }
  };
  return Promise.all([
    gpuless({ blockSize: 4, seq: [0], pos: [4], tables: [[0]] }),
    gpuless({ blockSize: 4, seq: [1], pos: [0], tables: [[0]] }),
  ]).then(() => {});
});

Deno.test("rope with per-row positions equals rope() at each row's position, bit for bit", async () => {
  const gpu = await testGpu();
  for (
    const [i, c] of [{ nHeads: 8, headDim: 8, ropeDim: 8, base: 10000 }, { nHeads: 3, headDim: 16, ropeDim: 10, base: 500000 }].entries()
  ) {
    const pos = [0, 17, 3, 2047, 5];
    const w = c.nHeads * c.headDim;
    const xh = randn(pos.length * w, 80 + i);
    const x = gpu.upload(xh, [pos.length, w], "f32", "activations");
    const p = gpu.upload(new Uint32Array(pos), [pos.length], "u32", "activations");
    const got = await gpu.readF32(ropeRows(gpu, x, p, Math.max(...pos), c));
    assertClose(got, ropeRowsReference(xh, pos, c), 2e-6, 0, `rope rows case ${i}`);
    for (const [r, at] of pos.entries()) {
      const one = gpu.upload(xh.subarray(r * w, (r + 1) * w), [1, w], "f32", "activations");
      const y = rope(gpu, one, { N: 1, T: 1, pos0: at, ...c });
      assert.deepEqual(got.subarray(r * w, (r + 1) * w), await gpu.readF32(y), `row ${r} at ${at}`);
      one.release();
      y.release();
    }
    x.release();
    p.release();
  }
});

Deno.test("mixed-adapter LoRA kernel (BGMV rows, SGMV segments, ranks 1/3/8 in one bank, stacked entries) equals the reference within 1e-5", async () => {
  const gpu = await testGpu();
  for (const [R, K, N] of [[1, 1, 1], [3, 17, 5], [19, 64, 33]]) {
    const ranks = [1, 3, 8];
    let off = 0;
    const slots = ranks.map((r) => {
      const s = { rank: r, aOff: off, bOff: off + r * K };
      off += r * K + N * r;
      return s;
    });
    const bankH = randn(off + 7, R * 100 + K, 0.5);
    const entries: LoraEntry[] = [];
    // A prefill segment, single decode rows of other adapters, a row with two adapters, rows with none.
    entries.push({ row0: 0, rows: Math.min(R, 2), ...slots[2], scale: 2 });
    for (let r = 2; r < R; r += 3) entries.push({ row0: r, rows: 1, ...slots[r % 3], scale: 0.5 });
    if (R > 4) entries.push({ row0: 4, rows: 1, ...slots[0], scale: -1.25 });
    const xH = randn(R * K, 7 + R), yH = randn(R * N, 9 + R);
    const x = gpu.upload(xH, [R, K], "f32", "activations"), y = gpu.upload(yH, [R, N], "f32", "activations");
    const bank = gpu.upload(bankH, [bankH.length], "f32", "lora");
    loraGather(gpu, x, y, bank, entries, { R, K, N });
    const ref = loraGatherReference(xH, yH, bankH, entries, { R, K, N });
    assertClose(await gpu.readF32(y), ref, 1e-5, 1e-5, `loraGather R=${R} K=${K} N=${N}`);
    // Rows no entry covers are untouched, exactly.
    const got = await gpu.readF32(y);
    for (let r = 0; r < R; r++) {
      if (entries.some((e) => r >= e.row0 && r < e.row0 + e.rows)) continue;
      assert.deepEqual(got.subarray(r * N, (r + 1) * N), yH.subarray(r * N, (r + 1) * N));
    }
    assert.throws(
      () => loraGather(gpu, x, y, bank, [{ row0: R, rows: 1, ...slots[0], scale: 1 }], { R, K, N }),
      (e) => e instanceof PeftError && e.code === "KERNEL_ARGS",
    );
    for (const t of [x, y, bank]) t.release();
  }
});

Deno.test("batched GPU sampling: each row picks its reference id (greedy, temperature, ties, NaN) for awkward V", async () => {
  const gpu = await testGpu();
  for (const V of [1, 3, 17, 513]) {
    const rows = [
      { temperature: 0, seed: 1, step: 0 },
      { temperature: 0.7, seed: 42, step: 3 },
      { temperature: 1.5, seed: 7, step: 11 },
      { temperature: 0, seed: 0, step: 0 }, // ties: the lowest index
      { temperature: 0, seed: 0, step: 0 }, // NaN logits: no index
    ];
    const R = rows.length;
    const logits = randn(R * V, V + 3);
    logits.fill(2, 3 * V, 4 * V);
    logits.fill(NaN, 4 * V, 5 * V);
    const lt = gpu.upload(logits, [R, V], "f32", "activations");
    const next = gpu.tensor([R], "u32"), out = gpu.tensor([2 * R], "u32");
    const params = gpu.upload(rowSamplingParams(rows), [R * 4], "u32", "activations");
    for (const slot of [0, 1]) {
      sampleRowsOnGpu(gpu, lt, next, out, params, { V, R, slot, stepAdd: slot });
      const got = await gpu.read(out, 2 * R) as Uint32Array;
      const nx = await gpu.read(next, R) as Uint32Array;
      rows.forEach((r, i) => {
        const want = i === 4
          ? 0xffffffff
          : sampleReference(logits.subarray(i * V, (i + 1) * V), { V, temperature: r.temperature, seed: r.seed, step: r.step + slot });
        assert.equal(got[slot * R + i], want, `V=${V} row ${i} slot ${slot}`);
        assert.equal(nx[i], want);
      });
    }
    for (const t of [lt, next, out, params]) t.release();
  }
});
