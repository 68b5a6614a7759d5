/**
 * LoRA weight initialisation as PEFT's LoraLayer.reset_lora_parameters does it, seeded:
 *  - init_lora_weights true: A ~ kaiming_uniform_(a=√5) on [r, in], i.e. U(±1/√in)
 *    (bound = gain·√3/√fan_in with gain = √(2/(1+a²)) = √(1/3)), and B = 0, so the adapter
 *    starts as an exact no-op;
 *  - "gaussian": A ~ N(0, std = 1/r), B = 0;
 *  - false: PEFT skips reset and keeps nn.Linear's default init for both, U(±1/√fan_in):
 *    A ~ U(±1/√in), B ~ U(±1/√r), so the adapter changes the output from step 0.
 * Each module draws from its own stream deriveSeed(seed, layer, moduleIndex), so adding or
 * removing targets does not change the others' weights.
 */
import { ALL_LINEAR_MODULES } from "../../model/config.ts";
import type { InitLoraWeights } from "./config.ts";
import type { LoraTarget } from "../targets.ts";
import { deriveSeed, Rng } from "../../util/rng.ts";

export interface LoraWeights {
  target: LoraTarget;
  /** lora_A: [r, in] row-major. */
  A: Float32Array;
  /** lora_B: [out, r] row-major. */
  B: Float32Array;
}

/** Bound of torch.nn.init.kaiming_uniform_(w, a) for a weight with fan_in inputs. */
export function kaimingUniformBound(fanIn: number, a = Math.sqrt(5)): number {
  const gain = Math.sqrt(2 / (1 + a * a));
  return gain * Math.sqrt(3 / fanIn);
}

function fillUniform(out: Float32Array, bound: number, rng: Rng): Float32Array {
  for (let i = 0; i < out.length; i++) out[i] = rng.uniformIn(-bound, bound);
  return out;
}

/** A and B of one adapted linear, deterministic in (seed, layer, module). */
export function initLoraWeights(target: LoraTarget, r: number, mode: InitLoraWeights, seed: number): LoraWeights {
  const rng = new Rng(deriveSeed(seed, target.layer, ALL_LINEAR_MODULES.indexOf(target.module)));
  const A = new Float32Array(r * target.inFeatures);
  const B = new Float32Array(target.outFeatures * r);
  if (mode === "gaussian") {
    for (let i = 0; i < A.length; i++) A[i] = rng.normal(0, 1 / r);
  } else {
    fillUniform(A, kaimingUniformBound(target.inFeatures), rng);
    if (mode === false) fillUniform(B, kaimingUniformBound(r), rng);
  }
  return { target, A, B };
}

/** Initial weights of every target of an adapter. */
export function initLoraAdapter(targets: readonly LoraTarget[], r: number, mode: InitLoraWeights, seed: number): LoraWeights[] {
  return targets.map((t) => initLoraWeights(t, r, mode, seed));
}
