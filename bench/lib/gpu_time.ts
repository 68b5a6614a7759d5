/**
 * Bench helper: milliseconds per call of a batch of GPU work, timed around `await gpu.sync()`.
 * One warm-up call first (pipeline compilation); then `samples` timed batches of `reps` calls
 * each, so small shapes are not all submit overhead; the median batch is reported.
 */
import type { Gpu } from "../../src/gpu/gpu.ts";

export interface GpuTimeOptions {
  /** Work of one call, and the work a timed batch should reach (reps = budget / flops). */
  flops: number;
  flopsPerBatch: number;
  maxReps: number;
  samples: number;
}

export async function gpuMsPerCall(gpu: Gpu, run: () => void, o: GpuTimeOptions): Promise<number> {
  run();
  await gpu.sync();
  const reps = Math.max(1, Math.min(o.maxReps, Math.round(o.flopsPerBatch / o.flops)));
  const samples: number[] = [];
  for (let s = 0; s < o.samples; s++) {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) run();
    await gpu.sync();
    samples.push((performance.now() - t0) / reps);
  }
  samples.sort((x, y) => x - y);
  return samples[samples.length >> 1];
}
