/**
 * RoPE with a position per row (shaders/rope_rows.wgsl): the rows of a ragged batch, each
 * sequence at its own position. Same cos/sin table as rope.ts, so a row rotates bit-identically
 * to rope() at that position. CPU reference: ropeReference row by row.
 */
import { check } from "../errors.ts";
import { type Gpu, grid1d, type Tensor } from "../gpu/gpu.ts";
import { cosSinTable, ropeReference, type RopeOptions } from "./rope.ts";

/** Rope's options without the per-dispatch row layout: positions come per row instead. */
export type RopeRowsOptions = Pick<RopeOptions, "nHeads" | "headDim" | "ropeDim" | "base" | "neox" | "freqFactors">;

/** Rotates the rows of x ([N, nHeads*headDim]) in place; `pos` is a u32 [N] tensor of positions (maxPos: their maximum). */
export function ropeRows(gpu: Gpu, x: Tensor, pos: Tensor, maxPos: number, o: RopeRowsOptions): Tensor {
  const N = pos.size;
  check(o.ropeDim % 2 === 0 && o.ropeDim >= 2 && o.ropeDim <= o.headDim, "KERNEL_ARGS", `ropeRows: ropeDim=${o.ropeDim} must be even and <= headDim=${o.headDim}`);
  check(x.dtype === "f32" && x.size >= N * o.nHeads * o.headDim, "KERNEL_ARGS", `ropeRows: x [${x.shape}] holds fewer than ${N} rows of ${o.nHeads * o.headDim}`);
  check(pos.dtype === "u32", "KERNEL_ARGS", "ropeRows: positions must be u32");
  const half = o.ropeDim / 2;
  check(!o.freqFactors || o.freqFactors.length === half, "KERNEL_ARGS", `ropeRows: freqFactors must hold ${half} values`);
  const cs = cosSinTable(gpu, o.ropeDim, o.base, maxPos + 1, o.freqFactors);
  gpu.dispatch("rope_rows", "main", { bindings: { x, cs, pos }, params: [N, o.nHeads, o.headDim, half, o.neox ? 1 : 0], workgroups: grid1d(N * o.nHeads * half, 64) });
  return x;
}

export function ropeRowsReference(x: Float32Array, pos: ArrayLike<number>, o: RopeRowsOptions): Float32Array {
  const w = o.nHeads * o.headDim, out = new Float32Array(pos.length * w);
  for (let r = 0; r < pos.length; r++) {
    const row = ropeReference(x.subarray(r * w, (r + 1) * w), { N: 1, T: 1, pos0: pos[r], nHeads: o.nHeads, headDim: o.headDim, ropeDim: o.ropeDim, base: o.base, neox: o.neox, freqFactors: o.freqFactors });
    out.set(row, r * w);
  }
  return out;
}
