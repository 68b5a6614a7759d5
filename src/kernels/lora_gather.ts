/**
 * LoRA deltas of many adapters over one batch (shaders/lora_gather.wgsl): each entry adds
 * scale·B·A·x to a run of rows, A [rank, K] and B [N, rank] read from one f32 bank at the entry's
 * offsets (adapters of different ranks side by side). Decode rows are runs of one (BGMV), prefill
 * segments longer runs (SGMV). CPU reference in f64.
 */
import { check } from "../errors.ts";
import { type Gpu, grid1d, type Tensor } from "../gpu/gpu.ts";

export interface LoraEntry {
  /** First row of y (and x) the entry covers, and how many. */
  row0: number;
  rows: number;
  /** Offsets (in f32 elements) of A [rank, K] and B [N, rank] in the bank. */
  aOff: number;
  bOff: number;
  rank: number;
  scale: number;
}

const FIELDS = 7;

/** The entries as the shader reads them (7 u32 each) and the intermediate's size; checked against the shapes. */
export function packLoraEntries(entries: readonly LoraEntry[], R: number, K: number, N: number, bankSize: number): { data: Uint32Array; total: number } {
  const data = new Uint32Array(entries.length * FIELDS);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  let total = 0;
  entries.forEach((e, i) => {
    const ok = [e.row0, e.rows, e.aOff, e.bOff, e.rank].every((v) => Number.isInteger(v) && v >= 0);
    check(ok && e.rows >= 1 && e.rank >= 1 && e.row0 + e.rows <= R, "KERNEL_ARGS", `loraGather: entry ${i} (rows ${e.row0}+${e.rows}, rank ${e.rank}) is outside the ${R} rows`);
    check(e.aOff + e.rank * K <= bankSize && e.bOff + N * e.rank <= bankSize, "KERNEL_ARGS", `loraGather: entry ${i}'s A or B runs past the bank (${bankSize} values)`);
    check(Number.isFinite(e.scale), "KERNEL_ARGS", `loraGather: entry ${i} has scale ${e.scale}`);
    f[0] = e.scale;
    data.set([e.row0, e.rows, e.aOff, e.bOff, e.rank, u[0], total], i * FIELDS);
    total += e.rows * e.rank;
  });
  return { data, total };
}

/**
 * y ([R, N], accumulated in place) += the entries' deltas over x ([R, K]). `packed` passes the
 * entries already on the GPU (packLoraEntries' data at entry `base` of a larger upload, with its
 * count and total) so a pass uploads once for all its sites.
 */
export function loraGather(
  gpu: Gpu,
  x: Tensor,
  y: Tensor,
  bank: Tensor,
  entries: readonly LoraEntry[],
  o: { R: number; K: number; N: number; packed?: { tensor: Tensor; base: number; total: number } },
): void {
  const { R, K, N } = o;
  if (!entries.length) return;
  check(x.dtype === "f32" && x.size >= R * K, "KERNEL_ARGS", `loraGather: x [${x.shape}] holds fewer than ${R}x${K}`);
  check(y.dtype === "f32" && y.size >= R * N, "KERNEL_ARGS", `loraGather: y [${y.shape}] holds fewer than ${R}x${N}`);
  check(x !== y && bank !== y, "KERNEL_ARGS", "loraGather: y must not alias x or the bank");
  let meta: Tensor, total: number, base = 0;
  if (o.packed) {
    ({ tensor: meta, base, total } = o.packed);
    check(meta.dtype === "u32" && meta.size >= (base + entries.length) * FIELDS, "KERNEL_ARGS", `loraGather: packed entries [${meta.shape}] end before entry ${base + entries.length}`);
  } else {
    const p = packLoraEntries(entries, R, K, N, bank.size);
    meta = gpu.upload(p.data, [p.data.length], "u32", "activations");
    total = p.total;
  }
  const v = gpu.tensor([total]);
  const bindings = { x, y, bank, v, entries: meta };
  const params = [entries.length, K, N, R, total, base];
  gpu.dispatch("lora_gather", "shrink", { bindings, params, workgroups: grid1d(total, 64) });
  gpu.dispatch("lora_gather", "expand", { bindings, params, workgroups: grid1d(R * N, 64) });
  if (!o.packed) meta.release();
  v.release();
}

/** CPU reference: y + Σ_e scale_e·(x_rows·Aᵀ)·Bᵀ in f64, as a new array. */
export function loraGatherReference(x: Float32Array, y: Float32Array, bank: Float32Array, entries: readonly LoraEntry[], o: { R: number; K: number; N: number }): Float32Array {
  const { R, K, N } = o;
  const out = new Float64Array(y.subarray(0, R * N));
  for (const e of entries) {
    for (let i = 0; i < e.rows; i++) {
      const row = e.row0 + i;
      const v = new Float64Array(e.rank);
      for (let j = 0; j < e.rank; j++) for (let k = 0; k < K; k++) v[j] += x[row * K + k] * bank[e.aOff + j * K + k];
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let j = 0; j < e.rank; j++) s += v[j] * bank[e.bOff + n * e.rank + j];
        out[row * N + n] += e.scale * s;
      }
    }
  }
  return Float32Array.from(out);
}
