/**
 * Token sampling on the GPU (shaders/sample.wgsl): greedy argmax or an exact temperature draw by
 * the Gumbel-max trick, writing the id where the next decode step reads it. Lets generation run
 * several tokens per host round trip. Top-k / top-p need a sort and stay on the host sampler.
 */
import { check } from "../errors.ts";
import { f32, type Gpu, type Tensor } from "../gpu/gpu.ts";
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
