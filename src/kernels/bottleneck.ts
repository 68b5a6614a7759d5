/**
 * A bottleneck adapter module fused into one dispatch for inference (shaders/bottleneck.wgsl):
 * out = r + s · (Wu · f(Wd · z + bd) + bu), row by row. Training builds the same module from graph
 * ops (their backward); this kernel only replaces the forward where nothing is recorded, so decoding
 * with a bottleneck adapter costs one dispatch per site. CPU reference in f64.
 */
import { check } from "../errors.ts";
import { f32, type Gpu, grid1d, type Tensor } from "../gpu/gpu.ts";
import { ACTIVATIONS, type Activation, activationReference } from "./activation.ts";

/** The largest bottleneck the kernel holds in workgroup memory (MAX_D in the shader). */
export const BOTTLENECK_MAX_D = 2048;

export interface BottleneckWeights<T> {
  /** Down-projection [d, D] and its bias [d]. */
  wd: T;
  bd: T;
  /** Up-projection [D, d] and its bias [D]. */
  wu: T;
  bu: T;
}

export interface BottleneckArgs {
  N: number;
  D: number;
  d: number;
  fn: Activation;
  scale: number;
}

function checkArgs(o: BottleneckArgs): void {
  for (const k of ["N", "D", "d"] as const) check(Number.isInteger(o[k]) && o[k] >= 1, "KERNEL_ARGS", `bottleneck: ${k} must be an integer >= 1, got ${o[k]}`);
  check(o.d <= BOTTLENECK_MAX_D, "KERNEL_ARGS", `bottleneck: d=${o.d} is over the kernel's ${BOTTLENECK_MAX_D}`);
  check(ACTIVATIONS.includes(o.fn), "KERNEL_ARGS", `bottleneck: activation ${JSON.stringify(o.fn)} is not one of ${ACTIVATIONS.join(", ")}`);
}

/**
 * out [N, D] = r + s · (Wu · f(Wd · z + bd) + bu); with `stream`, stream + that (the residual
 * stream added back in the same dispatch, in the order the block's separate add would use).
 */
export function bottleneckForward(gpu: Gpu, z: Tensor, r: Tensor, w: BottleneckWeights<Tensor>, o: BottleneckArgs, stream?: Tensor): Tensor {
  checkArgs(o);
  const { N, D, d } = o;
  const inputs = [[z, N * D, "z"], [r, N * D, "r"], [w.wd, d * D, "wd"], [w.bd, d, "bd"], [w.wu, D * d, "wu"], [w.bu, D, "bu"]] as [Tensor, number, string][];
  if (stream) inputs.push([stream, N * D, "stream"]);
  for (const [t, n, name] of inputs) {
    check(t.dtype === "f32" && t.size >= n, "KERNEL_ARGS", `bottleneck ${name}: needs an f32 tensor of ${n} elements, got [${t.shape}] ${t.dtype}`);
  }
  const out = gpu.tensor([N, D]);
  gpu.dispatch("bottleneck", "main", {
    bindings: { z, r, wd: w.wd, bd: w.bd, wu: w.wu, bu: w.bu, st: stream ?? r, out },
    params: [N, D, d, ACTIVATIONS.indexOf(o.fn), f32(o.scale), stream ? 1 : 0],
    workgroups: grid1d(N, 1),
  });
  return out;
}

export function bottleneckForwardReference(z: Float32Array, r: Float32Array, w: BottleneckWeights<Float32Array>, o: BottleneckArgs, stream?: Float32Array): Float32Array {
  checkArgs(o);
  const { N, D, d } = o;
  const out = new Float32Array(N * D);
  const pre = new Float32Array(d);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < d; j++) {
      let acc = w.bd[j];
      for (let k = 0; k < D; k++) acc += w.wd[j * D + k] * z[n * D + k];
      pre[j] = acc;
    }
    const a = activationReference(pre, o.fn);
    for (let i = 0; i < D; i++) {
      let acc = w.bu[i];
      for (let j = 0; j < d; j++) acc += w.wu[i * d + j] * a[j];
      const branch = r[n * D + i] + o.scale * acc;
      out[n * D + i] = stream ? Math.fround(stream[n * D + i] + Math.fround(branch)) : branch;
    }
  }
  return out;
}
