/**
 * Hook sites of the block: where PEFT methods act on the base model. The model knows the sites,
 * never the methods: a method (src/peft/<method>/) supplies hooks, each written as ops on the
 * graph (so its backward comes from the graph's rules, on the GPU and the CPU alike). Hooks of
 * several adapters stack on one site, applied in order.
 *
 *   linear   around a base linear: a replacement weight (partial fine-tuning), input scaling
 *            ((IA)³ on feed-forward modules), output hooks (LoRA / DoRA deltas, output scaling,
 *            bias terms)
 *   norm     the weight of an RMSNorm (LN tuning)
 *   (kvPrefix, embedPrefix and residual sites: prompt/prefix tuning and bottleneck adapters)
 */
import type { Graph, V } from "./graph.ts";

/** One base linear of one block (or the output head: layer -1, module "lm_head"). */
export interface LinearSite {
  layer: number;
  /** HF module name: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj. */
  module: string;
  /** GGUF weight name, e.g. blk.0.attn_q.weight. */
  weight: string;
  inFeatures: number;
  outFeatures: number;
}

export interface LinearOutputContext<T> {
  site: LinearSite;
  /** The linear's input (after input hooks). */
  x: V<T>;
  /** x·Wᵀ alone (before any output hook), for hooks that rescale the base output (DoRA). */
  yBase: V<T>;
}

export interface LinearHook<T> {
  /** A trainable replacement for the frozen weight ([out, in] f32): the base matmul uses it. */
  weight?(g: Graph<T>): V<T>;
  /** Transforms the input of the base matmul (and of later hooks); consumes x. */
  input?(g: Graph<T>, x: V<T>, site: LinearSite): V<T>;
  /** Transforms the output; consumes y. */
  output?(g: Graph<T>, y: V<T>, ctx: LinearOutputContext<T>): V<T>;
  /**
   * The output hook only adds a term that does not depend on y (LoRA, a bias): the block may
   * then accumulate the linear straight into the residual stream.
   */
  additive?: boolean;
  /** The output hook reads ctx.yBase (it must then be kept apart from y). */
  needsBase?: boolean;
}

export interface NormHook<T> {
  /** Replaces the norm's weight (a trainable copy). */
  weight(g: Graph<T>): V<T>;
}

/** All hooks active in one forward pass. */
export interface Hooks<T> {
  linear(site: LinearSite): readonly LinearHook<T>[];
  norm(weightName: string): NormHook<T> | undefined;
}

export const NO_HOOKS: Hooks<never> = {
  linear: () => [],
  norm: () => undefined,
};

/** Hooks of several adapters on one pass, in order (each site's lists concatenated). */
export function stackHooks<T>(list: readonly Hooks<T>[]): Hooks<T> {
  if (list.length === 1) return list[0];
  return {
    linear: (site) => list.flatMap((h) => h.linear(site)),
    norm: (name) => {
      const found = list.map((h) => h.norm(name)).filter((n) => n !== undefined);
      if (found.length > 1) throw new Error(`two active adapters replace the norm weight ${name}`);
      return found[0];
    },
  };
}
