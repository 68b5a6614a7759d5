/**
 * SwiGLU (llama FFN): h = silu(gate) * up, silu(g) = g * sigmoid(g).
 * Launchers for shaders/swiglu.wgsl and shaders/swiglu_backward.wgsl, and CPU references (f64).
 */
import { type Gpu, grid1d, type Tensor } from "../gpu/gpu.ts";
import { check } from "../errors.ts";

function checkPair(a: Tensor, b: Tensor, what: string): void {
  check(a.dtype === "f32" && b.dtype === "f32", "KERNEL_ARGS", `${what}: expected f32 tensors, got ${a.dtype} and ${b.dtype}`);
  check(a.size === b.size, "KERNEL_ARGS", `${what}: shapes [${a.shape}] and [${b.shape}] differ in size`);
}

export function swiglu(gpu: Gpu, gate: Tensor, up: Tensor, out?: Tensor): Tensor {
  checkPair(gate, up, "swiglu gate/up");
  const n = gate.size;
  if (out) {
    checkPair(gate, out, "swiglu gate/out");
    check(out !== gate && out !== up, "KERNEL_ARGS", "swiglu: out must not alias gate or up");
  }
  const h = out ?? gpu.tensor(gate.shape);
  gpu.dispatch("swiglu", "main", { bindings: { gate, up, h }, params: [n], workgroups: grid1d(n, 64) });
  return h;
}

export function swigluBackward(gpu: Gpu, dh: Tensor, gate: Tensor, up: Tensor): { dgate: Tensor; dup: Tensor } {
  checkPair(gate, up, "swigluBackward gate/up");
  checkPair(dh, gate, "swigluBackward dh/gate");
  const n = gate.size;
  const dgate = gpu.tensor(gate.shape), dup = gpu.tensor(gate.shape);
  gpu.dispatch("swiglu_backward", "main", { bindings: { dh, gate, up, dgate, dup }, params: [n], workgroups: grid1d(n, 64) });
  return { dgate, dup };
}

// ------------------------------------------------------------------ CPU references (f64)

const sigmoid = (g: number) => 1 / (1 + Math.exp(-g));

export function swigluReference(gate: Float32Array, up: Float32Array): Float32Array {
  const h = new Float32Array(gate.length);
  for (let i = 0; i < h.length; i++) h[i] = gate[i] * sigmoid(gate[i]) * up[i];
  return h;
}

export function swigluBackwardReference(dh: Float32Array, gate: Float32Array, up: Float32Array): { dgate: Float32Array; dup: Float32Array } {
  const dgate = new Float32Array(gate.length), dup = new Float32Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i], s = sigmoid(g);
    dgate[i] = dh[i] * up[i] * s * (1 + g * (1 - s));
    dup[i] = dh[i] * g * s;
  }
  return { dgate, dup };
}
