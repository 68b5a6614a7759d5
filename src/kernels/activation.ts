/**
 * Pointwise nonlinearities of adapter modules and their backward (shaders/activation.wgsl), with
 * CPU references in f64: relu, tanh, sigmoid, silu (swish) and gelu (tanh approximation, as
 * PyTorch's gelu(approximate="tanh") and AdapterHub's "gelu_new").
 */
import { check } from "../errors.ts";
import { type Gpu, grid1d, type Tensor, UNUSED } from "../gpu/gpu.ts";

export const ACTIVATIONS = ["relu", "tanh", "sigmoid", "silu", "gelu"] as const;
export type Activation = typeof ACTIVATIONS[number];

function fnIndex(a: Activation): number {
  const i = ACTIVATIONS.indexOf(a);
  check(i >= 0, "KERNEL_ARGS", `activation ${JSON.stringify(a)} is not one of ${ACTIVATIONS.join(", ")}`);
  return i;
}

/** y = f(x). */
export function activation(gpu: Gpu, x: Tensor, fn: Activation): Tensor {
  check(x.dtype === "f32", "KERNEL_ARGS", `activation: x must be f32, got ${x.dtype}`);
  const y = gpu.tensor(x.shape);
  gpu.dispatch("activation", "forward", { bindings: { x, dy: UNUSED, y }, params: [x.size, fnIndex(fn)], workgroups: grid1d(x.size, 64) });
  return y;
}

/** dx = dy · f'(x) for the forward's input x. */
export function activationBackward(gpu: Gpu, dy: Tensor, x: Tensor, fn: Activation): Tensor {
  check(dy.size === x.size && dy.dtype === "f32" && x.dtype === "f32", "KERNEL_ARGS", `activationBackward: dy [${dy.shape}] and x [${x.shape}] must be f32 of one size`);
  const dx = gpu.tensor(x.shape);
  gpu.dispatch("activation", "backward", { bindings: { x, dy, y: dx }, params: [x.size, fnIndex(fn)], workgroups: grid1d(x.size, 64) });
  return dx;
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
const GELU_C = Math.sqrt(2 / Math.PI);

export function activationReference(x: Float32Array, fn: Activation): Float32Array {
  return x.map((v) => {
    switch (fn) {
      case "relu": return Math.max(v, 0);
      case "tanh": return Math.tanh(v);
      case "sigmoid": return sigmoid(v);
      case "silu": return v * sigmoid(v);
      case "gelu": return 0.5 * v * (1 + Math.tanh(GELU_C * (v + 0.044715 * v ** 3)));
    }
  });
}

export function activationBackwardReference(dy: Float32Array, x: Float32Array, fn: Activation): Float32Array {
  return x.map((v, i) => {
    let d: number;
    switch (fn) {
      case "relu": d = v > 0 ? 1 : 0; break;
      case "tanh": d = 1 - Math.tanh(v) ** 2; break;
      case "sigmoid": d = sigmoid(v) * (1 - sigmoid(v)); break;
      case "silu": d = sigmoid(v) * (1 + v * (1 - sigmoid(v))); break;
      case "gelu": {
        const t = Math.tanh(GELU_C * (v + 0.044715 * v ** 3));
        d = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * v * v);
      }
    }
    return dy[i] * d;
  });
}
