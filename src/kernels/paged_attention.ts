/**
 * Attention over a paged KV cache (shaders/paged_attention.wgsl): a ragged batch of query rows,
 * each of its own sequence at its own position, reading keys and values through its sequence's
 * block table; and the scatter of new K/V rows into their cache slots. CPU references (f64).
 */
import { check } from "../errors.ts";
import { f32, type Gpu, grid1d, type Tensor, UNUSED } from "../gpu/gpu.ts";

/** Where each query row's keys are: its sequence and position, and the block tables. */
export interface PagedLayout {
  /** Rows per cache block. */
  blockSize: number;
  /** Per query row: index of its sequence in `tables`. */
  seq: ArrayLike<number>;
  /** Per query row: its position (it sees keys 0..pos of its sequence). */
  pos: ArrayLike<number>;
  /** Per sequence: its blocks in order (block b holds positions b*blockSize ..). */
  tables: readonly ArrayLike<number>[];
}

export interface PagedHeads {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Sliding window (Mistral, Phi-3): a row at pos sees keys pos - window < j <= pos; 0 or absent = all. */
  window?: number;
}

const MAX_HEAD_DIM = 256;

/** The layout packed as the shader reads it: (seq, pos) per row, then [nSeqs, maxBlocks] tables. */
export function packPagedMeta(l: PagedLayout): { meta: Uint32Array; maxBlocks: number; tableOffset: number } {
  const R = l.seq.length;
  check(l.pos.length === R, "KERNEL_ARGS", `paged attention: ${R} row sequences but ${l.pos.length} positions`);
  check(Number.isInteger(l.blockSize) && l.blockSize >= 1, "KERNEL_ARGS", `paged attention: blockSize must be an integer >= 1, got ${l.blockSize}`);
  const maxBlocks = Math.max(1, ...l.tables.map((t) => t.length));
  const tableOffset = 2 * R;
  const meta = new Uint32Array(tableOffset + l.tables.length * maxBlocks);
  for (let r = 0; r < R; r++) {
    const s = l.seq[r], p = l.pos[r];
    check(Number.isInteger(s) && s >= 0 && s < l.tables.length, "KERNEL_ARGS", `paged attention: row ${r} names sequence ${s} of ${l.tables.length}`);
    check(Number.isInteger(p) && p >= 0 && p < l.tables[s].length * l.blockSize, "KERNEL_ARGS", `paged attention: row ${r} at position ${p} is past its sequence's ${l.tables[s].length} blocks`);
    meta[2 * r] = s;
    meta[2 * r + 1] = p;
  }
  l.tables.forEach((t, s) => meta.set(Array.from(t), tableOffset + s * maxBlocks));
  return { meta, maxBlocks, tableOffset };
}

function checkHeads(h: PagedHeads, op: string) {
  check(Number.isInteger(h.nHeads) && Number.isInteger(h.nKvHeads) && h.nKvHeads >= 1 && h.nHeads % h.nKvHeads === 0, "KERNEL_ARGS", `${op}: nHeads=${h.nHeads} is not a multiple of nKvHeads=${h.nKvHeads}`);
  check(Number.isInteger(h.headDim) && h.headDim >= 1 && h.headDim <= MAX_HEAD_DIM, "KERNEL_ARGS", `${op}: headDim=${h.headDim} must be in 1..${MAX_HEAD_DIM}`);
  check(h.window === undefined || (Number.isInteger(h.window) && h.window >= 0), "KERNEL_ARGS", `${op}: window must be an integer >= 0, got ${h.window}`);
}

function checkPool(kc: Tensor, vc: Tensor, l: PagedLayout, kvW: number, op: string) {
  const blocks = Math.max(0, ...l.tables.flatMap((t) => Array.from(t))) + 1;
  for (const [t, n] of [[kc, "k cache"], [vc, "v cache"]] as const) {
    check(t.dtype === "f32" && t.size >= blocks * l.blockSize * kvW, "KERNEL_ARGS", `${op}: ${n} [${t.shape}] is smaller than block ${blocks - 1}'s end`);
  }
}

/** Writes the K/V rows of a batch ([R, Hkv*D] each) into their cache slots. */
export function pagedWriteKv(gpu: Gpu, knew: Tensor, vnew: Tensor, kc: Tensor, vc: Tensor, l: PagedLayout, h: PagedHeads, meta?: Tensor): void {
  checkHeads(h, "pagedWriteKv");
  const kvW = h.nKvHeads * h.headDim, R = l.seq.length;
  check(knew.size >= R * kvW && vnew.size >= R * kvW, "KERNEL_ARGS", `pagedWriteKv: new k/v [${knew.shape}] / [${vnew.shape}] hold fewer than ${R} rows of ${kvW}`);
  checkPool(kc, vc, l, kvW, "pagedWriteKv");
  const packed = packPagedMeta(l);
  const m = meta ?? gpu.upload(packed.meta, [packed.meta.length], "u32", "activations");
  gpu.dispatch("paged_attention", "write_kv", {
    bindings: { q: UNUSED, kc, vc, out: UNUSED, rowinfo: m, knew, vnew },
    params: [R, h.nHeads, h.nKvHeads, h.headDim, l.blockSize, packed.maxBlocks, packed.tableOffset, f32(0), 0],
    workgroups: grid1d(R * kvW, 64),
  });
  if (!meta) m.release();
}

/**
 * Attention of R query rows ([R, Hq*D]) over the cache: out [R, Hq*D]. `meta` may pass the
 * packed layout already on the GPU (one upload per pass, shared by every layer).
 */
export function pagedAttention(gpu: Gpu, q: Tensor, kc: Tensor, vc: Tensor, l: PagedLayout, h: PagedHeads, meta?: Tensor): Tensor {
  checkHeads(h, "pagedAttention");
  const R = l.seq.length, kvW = h.nKvHeads * h.headDim;
  check(R >= 1, "KERNEL_ARGS", "pagedAttention: no query rows");
  check(q.dtype === "f32" && q.size >= R * h.nHeads * h.headDim, "KERNEL_ARGS", `pagedAttention: q [${q.shape}] holds fewer than ${R} rows of ${h.nHeads * h.headDim}`);
  checkPool(kc, vc, l, kvW, "pagedAttention");
  const packed = packPagedMeta(l);
  const m = meta ?? gpu.upload(packed.meta, [packed.meta.length], "u32", "activations");
  const out = gpu.tensor([R, h.nHeads * h.headDim]);
  gpu.dispatch("paged_attention", "main", {
    bindings: { q, kc, vc, out, rowinfo: m, knew: UNUSED, vnew: UNUSED },
    params: [R, h.nHeads, h.nKvHeads, h.headDim, l.blockSize, packed.maxBlocks, packed.tableOffset, f32(1 / Math.sqrt(h.headDim)), h.window ?? 0],
    workgroups: grid1d(R * h.nHeads, 1),
  });
  if (!meta) m.release();
  return out;
}

// ------------------------------------------------------------------ CPU references (f64)

const slotOf = (l: PagedLayout, s: number, j: number) => l.tables[s][Math.floor(j / l.blockSize)] * l.blockSize + (j % l.blockSize);

export function pagedWriteKvReference(knew: Float32Array, vnew: Float32Array, kc: Float32Array, vc: Float32Array, l: PagedLayout, h: PagedHeads): void {
  const kvW = h.nKvHeads * h.headDim;
  for (let r = 0; r < l.seq.length; r++) {
    const dst = slotOf(l, l.seq[r], l.pos[r]) * kvW;
    kc.set(knew.subarray(r * kvW, (r + 1) * kvW), dst);
    vc.set(vnew.subarray(r * kvW, (r + 1) * kvW), dst);
  }
}

export function pagedAttentionReference(q: Float32Array, kc: Float32Array, vc: Float32Array, l: PagedLayout, h: PagedHeads): Float32Array {
  const { nHeads: Hq, nKvHeads: Hkv, headDim: D } = h;
  const R = l.seq.length, scale = 1 / Math.sqrt(D), kvW = Hkv * D;
  const out = new Float32Array(R * Hq * D);
  for (let r = 0; r < R; r++) {
    const s = l.seq[r], last = l.pos[r] + 1;
    const first = h.window ? Math.max(0, last - h.window) : 0;
    for (let hh = 0; hh < Hq; hh++) {
      const g = Math.floor(hh / (Hq / Hkv)), qo = r * Hq * D + hh * D;
      const sc = new Float64Array(last).fill(-Infinity);
      let m = -Infinity;
      for (let j = first; j < last; j++) {
        const ko = slotOf(l, s, j) * kvW + g * D;
        let dot = 0;
        for (let e = 0; e < D; e++) dot += q[qo + e] * kc[ko + e];
        sc[j] = dot * scale;
        m = Math.max(m, sc[j]);
      }
      let sum = 0;
      for (let j = first; j < last; j++) sum += Math.exp(sc[j] - m);
      for (let e = 0; e < D; e++) {
        let a = 0;
        for (let j = first; j < last; j++) a += (Math.exp(sc[j] - m) / sum) * vc[slotOf(l, s, j) * kvW + g * D + e];
        out[qo + e] = a;
      }
    }
  }
  return out;
}
