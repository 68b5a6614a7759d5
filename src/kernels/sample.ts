/**
 * Token sampling on the GPU (shaders/sample.wgsl): greedy argmax or an exact temperature draw by
 * the Gumbel-max trick, writing the id where the next decode step reads it. Lets generation run
 * several tokens per host round trip. Top-k / top-p need a sort and stay on the host sampler.
 */
import { check } from "../errors.ts";
import { f32, type Gpu, grid1d, type Tensor } from "../gpu/gpu.ts";
import { lowbias32 } from "./hash.ts";

export interface GpuSampleOptions {
  V: number;
  /** Index in `out` to write the id to. */
  slot: number;
  /** 0 = greedy. */
  temperature: number;
  seed: number;
  /** Decode step (mixes into the random stream so each step draws anew). */
  step: number;
}

export function sampleOnGpu(gpu: Gpu, logits: Tensor, next: Tensor, out: Tensor, o: GpuSampleOptions): void {
  check(logits.dtype === "f32" && logits.size >= o.V, "SAMPLE_ARGS", `sample: logits [${logits.shape}] must hold V = ${o.V} f32`);
  check(next.dtype === "u32" && out.dtype === "u32" && o.slot < out.size, "SAMPLE_ARGS", `sample: next/out must be u32 and slot ${o.slot} < ${out.size}`);
  check(Number.isFinite(o.temperature) && o.temperature >= 0, "SAMPLE_ARGS", `sample: temperature ${o.temperature} must be >= 0`);
  const greedy = o.temperature === 0;
  gpu.dispatch("sample", "main", {
    bindings: { logits, next, out },
    params: [o.V, o.slot, o.seed >>> 0, o.step >>> 0, f32(greedy ? 1 : 1 / o.temperature), greedy ? 1 : 0],
    workgroups: [1],
  });
}

/** CPU reference: the per-index scores the shader maximises (f64 math). */
export function sampleScoresReference(logits: ArrayLike<number>, o: Omit<GpuSampleOptions, "slot">): Float64Array {
  const out = new Float64Array(o.V);
  const mix = lowbias32(((o.step >>> 0) ^ lowbias32(((o.seed >>> 0) + 0x9e3779b9) >>> 0)) >>> 0);
  for (let i = 0; i < o.V; i++) {
    if (o.temperature === 0) out[i] = logits[i];
    else {
      const h = lowbias32((i ^ mix) >>> 0);
      const u = ((h >>> 8) + 0.5) / 16777216;
      out[i] = logits[i] / o.temperature - Math.log(-Math.log(u));
    }
  }
  return out;
}

/** CPU reference: the id the shader picks (first index of the maximum score). */
export function sampleReference(logits: ArrayLike<number>, o: Omit<GpuSampleOptions, "slot">): number {
  const s = sampleScoresReference(logits, o);
  let best = 0;
  for (let i = 1; i < s.length; i++) if (s[i] > s[best]) best = i;
  return best;
}

/** One row's sampling parameters for sampleRowsOnGpu. */
export interface RowSampling {
  /** 0 = greedy. */
  temperature: number;
  seed: number;
  /** The row's decode step at stepAdd = 0. */
  step: number;
}

/**
 * Samples every row of logits [R, V] at once (shaders/sample_rows.wgsl), each with its own
 * parameters: next[r] = the id (fed to the next batched step), out[slot·R + r] = the same id.
 * `rowParams` (from rowSamplingParams) stays valid for a whole chunk; stepAdd advances the steps.
 */
export function sampleRowsOnGpu(gpu: Gpu, logits: Tensor, next: Tensor, out: Tensor, rowParams: Tensor, o: { V: number; R: number; slot: number; stepAdd: number }): void {
  check(logits.dtype === "f32" && logits.size >= o.R * o.V, "SAMPLE_ARGS", `sampleRows: logits [${logits.shape}] must hold ${o.R} rows of V = ${o.V}`);
  check(next.dtype === "u32" && next.size >= o.R && out.dtype === "u32" && out.size >= (o.slot + 1) * o.R, "SAMPLE_ARGS", `sampleRows: next/out must be u32 with room for slot ${o.slot} of ${o.R} rows`);
  check(rowParams.dtype === "u32" && rowParams.size >= 4 * o.R, "SAMPLE_ARGS", `sampleRows: row parameters must be u32 [${o.R}, 4]`);
  gpu.dispatch("sample_rows", "main", { bindings: { logits, next, out, rowp: rowParams }, params: [o.V, o.R, o.slot, o.stepAdd >>> 0], workgroups: grid1d(o.R, 1) });
}

/** The u32 [R, 4] row parameters of sampleRowsOnGpu (seed, step, 1/temperature bits, greedy). */
export function rowSamplingParams(rows: readonly RowSampling[]): Uint32Array {
  const out = new Uint32Array(rows.length * 4);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  rows.forEach((r, i) => {
    check(Number.isFinite(r.temperature) && r.temperature >= 0, "SAMPLE_ARGS", `sampleRows: row ${i} temperature ${r.temperature} must be >= 0`);
    f[0] = r.temperature === 0 ? 1 : 1 / r.temperature;
    out.set([r.seed >>> 0, r.step >>> 0, u[0], r.temperature === 0 ? 1 : 0], i * 4);
  });
  return out;
}
