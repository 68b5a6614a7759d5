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
 *   embedPrefix  virtual-token embeddings before every sequence (prompt tuning, P-tuning)
 *   kvPrefix     key/value rows before every sequence in a layer's attention (prefix tuning)
 *   residual     a module on a residual branch: the branch output is replaced before the block
 *                adds it to the stream (bottleneck adapters); residualStream, the same with that
 *                add folded in (one dispatch when decoding)
 */
import { PeftError } from "../errors.ts";
import type { Graph, V } from "./graph.ts";

/** One base linear of one block (or the output head: layer -1, module "lm_head"). */
export interface LinearSite {
  layer: number;
  /** HF module name: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (phi3: qkv_proj, gate_up_proj). */
  module: string;
  /** GGUF weight name, e.g. blk.0.attn_q.weight. */
  weight: string;
  /** GGUF name of the frozen base bias added to x·Wᵀ (qwen2's q/k/v), when the linear has one. */
  bias?: string;
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
  /**
   * The output hook adds scale·x·Aᵀ·Bᵀ and nothing else when not training (LoRA): a batch of rows
   * with different adapters may then apply it with one gathered kernel instead of the hook.
   */
  lowRank?: { A: T; B: T; rank: number; scale: number };
}

export interface NormHook<T> {
  /** Replaces the norm's weight (a trainable copy). */
  weight(g: Graph<T>): V<T>;
}

/** Key and value rows a layer's attention sees before each sequence ([P, kvDim] each). */
export interface KvPrefix<T> {
  /** Keys as attention uses them: already rotated (prefix tuning's keys are never rotated), GGUF head order. */
  k: V<T>;
  v: V<T>;
}

export type Branch = "attn" | "ffn";

/** All hooks active in one forward pass. */
export interface Hooks<T> {
  linear(site: LinearSite): readonly LinearHook<T>[];
  norm(weightName: string): NormHook<T> | undefined;
  /** Virtual tokens before every sequence: their count (embedPrefix or kvPrefix rows), 0 when none. */
  virtualTokens?: number;
  /** [P, dim] embeddings before each sequence's token embeddings (positions 0..P-1, text after them). */
  embedPrefix?(g: Graph<T>): V<T>;
  /** Prefix rows of layer `layer`'s keys and values (text positions then start at P). */
  kvPrefix?(g: Graph<T>, layer: number): KvPrefix<T> | undefined;
  /**
   * The branch output of layer `layer`'s attention or FFN, replaced (consumes h) before the block
   * adds the sublayer input x to it: out = x + residual(x, h).
   */
  residual?(g: Graph<T>, layer: number, branch: Branch, x: V<T>, h: V<T>): V<T>;
  /** Layers (and branches) the residual hook acts on, so the block keeps the fused path elsewhere. */
  residualAt?(layer: number, branch: Branch): boolean;
  /**
   * The same module with the block's add folded in: returns x + residual(x, h), consuming x and h
   * (one dispatch instead of two when decoding). Optional; only used where it is the only residual hook.
   */
  residualStream?(g: Graph<T>, layer: number, branch: Branch, x: V<T>, h: V<T>): V<T>;
}

export const NO_HOOKS: Hooks<never> = {
  linear: () => [],
  norm: () => undefined,
};

/** The virtual-token rows a pass adds before the text (0 without prompt/prefix hooks). */
export function virtualTokens<T>(h: Hooks<T>): number {
  return h.virtualTokens ?? 0;
}

/** Hooks of several adapters on one pass, in order (each site's lists concatenated). */
export function stackHooks<T>(list: readonly Hooks<T>[]): Hooks<T> {
  if (list.length === 1) return list[0];
  const prompts = list.filter((h) => virtualTokens(h) > 0);
  if (prompts.length > 1) {
    throw new PeftError("ADAPTER_CONFLICT", "two active adapters add virtual tokens (prompt or prefix tuning); use one of them at a time");
  }
  const prompt = prompts[0];
  const residuals = list.filter((h) => h.residual);
  return {
    linear: (site) => list.flatMap((h) => h.linear(site)),
    norm: (name) => {
      const found = list.map((h) => h.norm(name)).filter((n) => n !== undefined);
      if (found.length > 1) throw new PeftError("ADAPTER_CONFLICT", `two active adapters replace the norm weight ${name}`);
      return found[0];
    },
    virtualTokens: prompt ? virtualTokens(prompt) : 0,
    embedPrefix: prompt?.embedPrefix?.bind(prompt),
    kvPrefix: prompt?.kvPrefix?.bind(prompt),
    residual: residuals.length
      ? (g, layer, branch, x, h) => {
        for (const r of residuals) if (r.residualAt?.(layer, branch) ?? true) h = r.residual!(g, layer, branch, x, h);
        return h;
      }
      : undefined,
    residualAt: residuals.length ? (layer, branch) => residuals.some((r) => r.residualAt?.(layer, branch) ?? true) : undefined,
    residualStream: residuals.length === 1 ? residuals[0].residualStream?.bind(residuals[0]) : undefined,
  };
}
