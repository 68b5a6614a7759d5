/**
 * The decoder block, written once for every family (llama2.c's order):
 *   x = x + o_proj(attention(rope(q_proj(norm(x))), rope(k_proj(norm(x))), v_proj(norm(x))))
 *   x = x + down_proj(silu(gate_proj(norm(x))) * up_proj(norm(x)))
 * with the hook sites of sites.ts. It runs on the autodiff graph over either backend, so the
 * inference forward (KV cache), the training pass (tape, checkpointing) and the CPU reference
 * are this code; they differ only in the `Positions` (how rope and attention see the sequence).
 * Family differences (families/family.ts) are data here: q/k/v biases (frozen, added before the
 * hooks' output terms, as a PEFT-wrapped nn.Linear with bias computes), fused qkv and gate/up
 * projections (one linear, then column slices), the rope layout and frequency factors, and the
 * sliding window (in `Positions`).
 */
import type { LlamaConfig } from "./config.ts";
import { biasName, HF_TO_GGUF_MODULE } from "./config.ts";
import { linearShape } from "./config.ts";
import type { AttentionArgs, RopeArgs } from "./backend.ts";
import { family } from "./families/family.ts";
import type { Graph, V } from "./graph.ts";
import type { Branch, Hooks, KvPrefix, LinearSite } from "./sites.ts";
import { PeftError } from "../errors.ts";

/** How a pass positions its tokens: rope angles and the keys each query attends to. */
export interface Positions<T> {
  /** RoPE of q or k rows ([rows, heads·headDim]); consumes x. */
  rope(g: Graph<T>, x: V<T>, nHeads: number): V<T>;
  /** Causal attention of layer `layer` (after the prefix rows when given); consumes q, k and v. */
  attention(g: Graph<T>, layer: number, q: V<T>, k: V<T>, v: V<T>, prefix?: KvPrefix<T>): V<T>;
}

export interface BlockContext<T> {
  g: Graph<T>;
  config: LlamaConfig;
  hooks: Hooks<T>;
  positions: Positions<T>;
}

/** The site of a block linear by HF module name (with its frozen bias, when the family has one). */
export function linearSite(c: LlamaConfig, layer: number, module: string): LinearSite {
  const [outFeatures, inFeatures] = linearShape(c, module);
  const bias = biasName(c, module, layer);
  return { layer, module, weight: `blk.${layer}.${HF_TO_GGUF_MODULE[module]}.weight`, inFeatures, outFeatures, ...(bias ? { bias } : {}) };
}

/** The rope settings of a model (every pass's rope call adds its positions). */
export function ropeSettings(c: LlamaConfig): Pick<RopeArgs, "headDim" | "ropeDim" | "base" | "neox" | "freqFactors"> {
  return { headDim: c.headDim, ropeDim: c.ropeDim, base: c.ropeBase, neox: family(c).rope === "neox", freqFactors: c.ropeFreqFactors };
}

/** The attention heads and window of a model (every pass's attention call adds its layout). */
export function attentionSettings(c: LlamaConfig): Pick<AttentionArgs, "nHeads" | "nKvHeads" | "headDim" | "window"> {
  return { nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim, window: c.slidingWindow ?? 0 };
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
  if (residual && !replaced.length && !site.bias && outputs.every((h) => h.additive)) {
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
    // yBase is x·Wᵀ without the bias (DoRA rescales it; PEFT's DoRA subtracts the bias first).
    let yBase = needsBase ? g.keep(y) : y;
    if (site.bias) {
      const b = g.constant(g.be.weight(site.bias));
      const yb = g.addCols(y, b);
      g.free(b);
      g.free(y);
      y = yb;
      if (!needsBase) yBase = y;
    }
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

/**
 * x + branch(x): the branch's last linear accumulated into the stream, or, when a residual hook
 * acts here (bottleneck adapters), x + hook(x, branch output). Consumes x.
 */
function residualBranch<T>(c: BlockContext<T>, l: number, branch: Branch, x: V<T>, input: V<T>, site: LinearSite): V<T> {
  const { g, hooks } = c;
  if (!hooks.residual || !(hooks.residualAt?.(l, branch) ?? true)) return linear(c, input, site, x);
  if (hooks.residualStream) return hooks.residualStream(g, l, branch, x, linear(c, input, site));
  const h = hooks.residual(g, l, branch, x, linear(c, input, site));
  const out = g.add(x, h);
  g.free(x);
  g.free(h);
  return out;
}

/** One block: consumes x, returns the block's output. */
export function blockForward<T>(c: BlockContext<T>, l: number, x: V<T>): V<T> {
  const { g, config: cfg, positions } = c;
  const p = `blk.${l}.`;
  const site = (m: string) => linearSite(cfg, l, m);

  const fused = family(cfg).fused;
  const xn = norm(c, x, p + "attn_norm.weight");
  let q: V<T>, k: V<T>, v: V<T>;
  if (fused) {
    const qkv = linear(c, xn, site("qkv_proj"));
    const qDim = cfg.nHeads * cfg.headDim, kvDim = cfg.nKvHeads * cfg.headDim;
    [q, k, v] = [g.sliceCols(qkv, 0, qDim), g.sliceCols(qkv, qDim, kvDim), g.sliceCols(qkv, qDim + kvDim, kvDim)];
    g.free(qkv);
  } else {
    q = linear(c, xn, site("q_proj"));
    k = linear(c, xn, site("k_proj"));
    v = linear(c, xn, site("v_proj"));
  }
  g.free(xn);
  const prefix = c.hooks.kvPrefix?.(g, l);
  const att = positions.attention(g, l, positions.rope(g, q, cfg.nHeads), positions.rope(g, k, cfg.nKvHeads), v, prefix);
  if (prefix) {
    g.free(prefix.k);
    g.free(prefix.v);
  }
  const xMid = residualBranch(c, l, "attn", x, att, site("o_proj"));
  g.free(att);

  const xn2 = norm(c, xMid, p + "ffn_norm.weight");
  let gate: V<T>, up: V<T>;
  if (fused) {
    // phi3's gate_up_proj: gate rows first, then up (HF's chunk(2), llama.cpp's LLM_FFN_SWIGLU).
    const gu = linear(c, xn2, site("gate_up_proj"));
    [gate, up] = [g.sliceCols(gu, 0, cfg.hiddenDim), g.sliceCols(gu, cfg.hiddenDim, cfg.hiddenDim)];
    g.free(gu);
  } else {
    gate = linear(c, xn2, site("gate_proj"));
    up = linear(c, xn2, site("up_proj"));
  }
  g.free(xn2);
  const h = g.swiglu(gate, up);
  g.free(gate);
  g.free(up);
  const xOut = residualBranch(c, l, "ffn", xMid, h, site("down_proj"));
  g.free(h);
  return xOut;
}

/**
 * Token embeddings of `ids` (a backend ids tensor the caller keeps until backward) for B
 * sequences, with the hooks' virtual-token embeddings before each sequence when `withPrefix`.
 */
export function embed<T>(c: BlockContext<T>, ids: T, B = 1, withPrefix = true): V<T> {
  const { g } = c;
  // The frozen table's rows (looked up from quantized rows when the table is kept quantized).
  const x = g.input(g.be.baseEmbedding("token_embd.weight", ids));
  if (!withPrefix || !c.hooks.embedPrefix) return x;
  const prefix = c.hooks.embedPrefix(g);
  const out = g.prefixRows(prefix, x, B);
  g.free(prefix);
  g.free(x);
  return out;
}

/** The rows of the text tokens of x ([B·(P+T), C] -> [B·T, C]): virtual-token rows dropped (consumes x). */
export function dropVirtualRows<T>(g: Graph<T>, x: V<T>, P: number, B: number): V<T> {
  if (P === 0) return x;
  const T = x.rows / B - P;
  const parts = Array.from({ length: B }, (_, b) => g.sliceRows(x, b * (P + T) + P, T));
  const out = parts.length === 1 ? parts[0] : g.concatRows(parts);
  if (parts.length > 1) for (const p of parts) g.free(p);
  g.free(x);
  return out;
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

/**
 * Training and the CPU reference: B sequences of T rows (virtual-token embeddings included), from
 * position `pos0` (the key prefix's length with prefix tuning: text positions follow it), with
 * attention over each sequence's prefix keys and its own rows.
 */
export class SequencePositions<T> implements Positions<T> {
  constructor(readonly B: number, readonly T: number, readonly config: LlamaConfig, readonly pos0 = 0) {}
  rope(g: Graph<T>, x: V<T>, nHeads: number): V<T> {
    return g.rope(x, { ...ropeSettings(this.config), N: this.B * this.T, T: this.T, pos0: this.pos0, nHeads });
  }
  attention(g: Graph<T>, _layer: number, q: V<T>, k: V<T>, v: V<T>, prefix?: KvPrefix<T>): V<T> {
    const c = this.config, B = this.B, T = this.T;
    let kk = k, vv = v;
    if (prefix) {
      kk = g.prefixRows(prefix.k, k, B);
      vv = g.prefixRows(prefix.v, v, B);
      g.free(k);
      g.free(v);
    }
    const P = prefix ? prefix.k.rows : 0;
    const y = g.attention(q, kk, vv, { ...attentionSettings(c), B, T, S: P + T, kvStride: P + T, pos0: P });
    g.free(q);
    g.free(kk);
    g.free(vv);
    return y;
  }
}

/** The positions of B training sequences of T text tokens under these hooks (virtual tokens first). */
export function sequencePositions<T>(hooks: Hooks<T>, B: number, T: number, config: LlamaConfig): SequencePositions<T> {
  const P = hooks.virtualTokens ?? 0;
  return hooks.embedPrefix ? new SequencePositions(B, P + T, config, 0) : new SequencePositions(B, T, config, hooks.kvPrefix ? P : 0);
}

/** The output head's site (hooks may target it as "lm_head"). */
export function headSite(cfg: LlamaConfig): LinearSite {
  return { layer: -1, module: "lm_head", weight: headWeight(cfg), inFeatures: cfg.dim, outFeatures: cfg.vocabSize };
}

/** GGUF name of the head weight (the embedding table when tied). */
export function headWeight(cfg: LlamaConfig): string {
  return cfg.tiedEmbeddings ? "token_embd.weight" : "output.weight";
}
