/**
 * The llama block, written once (llama2.c's order):
 *   x = x + o_proj(attention(rope(q_proj(norm(x))), rope(k_proj(norm(x))), v_proj(norm(x))))
 *   x = x + down_proj(silu(gate_proj(norm(x))) * up_proj(norm(x)))
 * with the hook sites of sites.ts. It runs on the autodiff graph over either backend, so the
 * inference forward (KV cache), the training pass (tape, checkpointing) and the CPU reference
 * are this code; they differ only in the `Positions` (how rope and attention see the sequence).
 */
import type { LlamaConfig } from "./config.ts";
import { HF_TO_GGUF_MODULE } from "./config.ts";
import { linearShape } from "./config.ts";
import type { Graph, V } from "./graph.ts";
import type { Hooks, LinearSite } from "./sites.ts";
import { PeftError } from "../errors.ts";

/** How a pass positions its tokens: rope angles and the keys each query attends to. */
export interface Positions<T> {
  /** RoPE of q or k rows ([rows, heads·headDim]); consumes x. */
  rope(g: Graph<T>, x: V<T>, nHeads: number): V<T>;
  /** Causal attention of layer `layer`; consumes q, k and v. */
  attention(g: Graph<T>, layer: number, q: V<T>, k: V<T>, v: V<T>): V<T>;
}

export interface BlockContext<T> {
  g: Graph<T>;
  config: LlamaConfig;
  hooks: Hooks<T>;
  positions: Positions<T>;
}

/** The site of a block linear by HF module name. */
export function linearSite(c: LlamaConfig, layer: number, module: string): LinearSite {
  const [outFeatures, inFeatures] = linearShape(c, module);
  return { layer, module, weight: `blk.${layer}.${HF_TO_GGUF_MODULE[module]}.weight`, inFeatures, outFeatures };
}

/** RMSNorm with the frozen weight `name`, or the weight a norm hook supplies. */
export function norm<T>(c: BlockContext<T>, x: V<T>, name: string): V<T> {
  const { g } = c;
  const hook = c.hooks.norm(name);
  const w = hook ? hook.weight(g) : g.constant(g.be.weight(name));
  const y = g.rmsnorm(x, w, c.config.normEps);
  g.free(w);
  return y;
}

/**
 * A base linear with its hooks: y = outputHooks(inputHooks(x)·Wᵀ). With `residual`, returns
 * residual + y and consumes residual (accumulated in place when every output hook is additive).
 * x is not consumed.
 */
export function linear<T>(c: BlockContext<T>, x: V<T>, site: LinearSite, residual?: V<T>): V<T> {
  const { g } = c;
  const hooks = c.hooks.linear(site);
  const replaced = hooks.filter((h) => h.weight);
  if (replaced.length > 1) throw new PeftError("ADAPTER_CONFLICT", `two active adapters replace the weight ${site.weight}`);
  let xi = g.keep(x);
  for (const h of hooks) if (h.input) xi = h.input(g, xi, site);
  const outputs = hooks.filter((h) => h.output);
  let y: V<T>;
  let out: V<T>;
  if (residual && !replaced.length && outputs.every((h) => h.additive)) {
    y = g.baseLinearAdd(residual, xi, site.weight);
    for (const h of outputs) y = h.output!(g, y, { site, x: xi, yBase: y });
    out = y;
  } else {
    if (replaced.length) {
      const W = replaced[0].weight!(g);
      y = g.matmul(xi, W, { transB: true });
      g.free(W);
    } else {
      y = g.baseLinear(xi, site.weight);
    }
    const needsBase = outputs.some((h) => h.needsBase);
    const yBase = needsBase ? g.keep(y) : y;
    for (const h of outputs) y = h.output!(g, y, { site, x: xi, yBase });
    if (needsBase) g.free(yBase);
    if (residual) {
      out = g.add(residual, y);
      g.free(residual);
      g.free(y);
    } else out = y;
  }
  g.free(xi);
  return out;
}

/** One block: consumes x, returns the block's output. */
export function blockForward<T>(c: BlockContext<T>, l: number, x: V<T>): V<T> {
  const { g, config: cfg, positions } = c;
  const p = `blk.${l}.`;
  const site = (m: string) => linearSite(cfg, l, m);

  const xn = norm(c, x, p + "attn_norm.weight");
  const q = linear(c, xn, site("q_proj"));
  const k = linear(c, xn, site("k_proj"));
  const v = linear(c, xn, site("v_proj"));
  g.free(xn);
  const att = positions.attention(g, l, positions.rope(g, q, cfg.nHeads), positions.rope(g, k, cfg.nKvHeads), v);
  const xMid = linear(c, att, site("o_proj"), x);
  g.free(att);

  const xn2 = norm(c, xMid, p + "ffn_norm.weight");
  const gate = linear(c, xn2, site("gate_proj"));
  const up = linear(c, xn2, site("up_proj"));
  g.free(xn2);
  const h = g.swiglu(gate, up);
  g.free(gate);
  g.free(up);
  const xOut = linear(c, h, site("down_proj"), xMid);
  g.free(h);
  return xOut;
}

/** Token embeddings of `ids` (a backend ids tensor the caller keeps until backward). */
export function embed<T>(c: BlockContext<T>, ids: T): V<T> {
  const table = c.g.constant(c.g.be.weight("token_embd.weight"));
  return c.g.embedding(table, ids);
}

/** All blocks from the embeddings up; `checkpointing` recomputes each block in the backward. */
export function blocks<T>(c: BlockContext<T>, x: V<T>, checkpointing = false): V<T> {
  for (let l = 0; l < c.config.nLayers; l++) {
    x = checkpointing ? c.g.checkpoint(x, (g, xi) => blockForward({ ...c, g }, l, xi)) : blockForward(c, l, x);
  }
  return x;
}

/** The final norm (hooks included); consumes x. */
export function finalNorm<T>(c: BlockContext<T>, x: V<T>): V<T> {
  const y = norm(c, x, "output_norm.weight");
  c.g.free(x);
  return y;
}

/** Training and the CPU reference: B sequences of T tokens from position 0, attention over all of them. */
export class SequencePositions<T> implements Positions<T> {
  constructor(readonly B: number, readonly T: number, readonly config: LlamaConfig) {}
  rope(g: Graph<T>, x: V<T>, nHeads: number): V<T> {
    const c = this.config;
    return g.rope(x, { N: this.B * this.T, T: this.T, pos0: 0, nHeads, headDim: c.headDim, ropeDim: c.ropeDim, base: c.ropeBase });
  }
  attention(g: Graph<T>, _layer: number, q: V<T>, k: V<T>, v: V<T>): V<T> {
    const c = this.config;
    const y = g.attention(q, k, v, {
      B: this.B, T: this.T, S: this.T, kvStride: this.T, pos0: 0, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim,
    });
    g.free(q);
    g.free(k);
    g.free(v);
    return y;
  }
}

/** The output head's site (hooks may target it as "lm_head"). */
export function headSite(cfg: LlamaConfig): LinearSite {
  return { layer: -1, module: "lm_head", weight: headWeight(cfg), inFeatures: cfg.dim, outFeatures: cfg.vocabSize };
}

/** GGUF name of the head weight (the embedding table when tied). */
export function headWeight(cfg: LlamaConfig): string {
  return cfg.tiedEmbeddings ? "token_embd.weight" : "output.weight";
}
