/**
 * The llama forward pass on the GPU, built from kernels; reads like the math:
 *   x = embed(ids)
 *   per block: x += o_proj(attention(rope(q_proj(norm(x))), rope(k_proj(..)), v_proj(..)))
 *              x += down_proj(silu(gate_proj(norm(x))) * up_proj(norm(x)))
 *   logits = head(norm(x))
 * Inference keeps a KV cache per layer; prefill runs the whole prompt in one pass and decode
 * one token per pass. Every dispatch of a pass goes into one command buffer (one submit).
 * The block itself is block.ts (shared with training and the CPU reference); adapters act
 * through the hooks of the pass.
 */
import { PeftError } from "../errors.ts";
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import type { LlamaConfig } from "./config.ts";
import { attentionSettings, type BlockContext, blocks, dropVirtualRows, embed, finalNorm, headSite, linear, type Positions, ropeSettings } from "./block.ts";
import { Graph, type V } from "./graph.ts";
import { GpuBackend } from "./gpu_backend.ts";
import { type Hooks, NO_HOOKS, virtualTokens } from "./sites.ts";
import { quantize4bit, type QuantState4bit } from "../quant/mod.ts";
import { type ComputeDtype, isQuantized, type LinearWeight, type QuantizedLinear, type QuantizeSpec } from "./quantized.ts";
import { uploadFourBit } from "./quantized_4bit.ts";
import { GgmlLinear, keepsGgmlFormat } from "./quantized_ggml.ts";
import { f32ToF16Array } from "../io/bytes.ts";
import { ggmlFirstNonFinite } from "../io/ggml_quants.ts";
import { tensorLabel, type WeightSource } from "./weights.ts";
import { expectedShapes, ROPE_FREQS } from "./validate_weights.ts";

export interface LlamaLoadOptions {
  /**
   * Quantize the block linear weights (and the untied head when spec.head) to 4 bits while loading;
   * a GGUF's quantized linears are dequantized first (re-quantized to NF4/FP4).
   */
  quantize?: QuantizeSpec;
  /**
   * Expand a GGUF's block-quantized tensors (Q8_0, Q4_K, ..., BF16) to f32 at load. Default false:
   * they stay in their own format on the GPU (matrices: linears, the embedding table, the head),
   * dequantized on the fly by the kernels.
   */
  dequantize?: boolean;
  /**
   * "f16": linear weights that are not quantized (block linears, an untied head) are stored as
   * f16 and every base matmul narrows its activations to f16 (f32 sums and outputs). Embeddings
   * (and so a tied head) and norms stay f32. Default "f32".
   */
  computeDtype?: ComputeDtype;
}

export interface ForwardOptions {
  /** Adapter hooks active in this pass (unmerged adapters). */
  hooks?: Hooks<Tensor>;
  allLogits?: boolean;
}

export interface KvCache {
  capacity: number;
  k: Tensor[];
  v: Tensor[];
}

export class LlamaGpu {
  private cache: KvCache | null = null;

  private constructor(
    readonly gpu: Gpu,
    readonly config: LlamaConfig,
    /** f32 GPU weights by GGUF name (q/k rows in GGUF order): all of them unless quantized. */
    readonly weights: Map<string, Tensor>,
    /**
     * Weights kept quantized by GGUF name, dequantized on the fly by the kernels: 4-bit linears
     * (QLoRA base) and GGUF matrices in their ggml block format (linears, embeddings, head).
     */
    readonly quantized: Map<string, QuantizedLinear> = new Map(),
    /** How `quantized` was made, when it was. */
    readonly quantSpec?: QuantizeSpec,
    /** Precision of the base matmuls' operands (see LlamaLoadOptions.computeDtype). */
    readonly computeDtype: ComputeDtype = "f32",
  ) {}

  /**
   * Uploads every tensor of `source`, one at a time (host memory holds one f32 tensor at once;
   * with `quantize`, one f32 tensor plus the 4-bit codes of the current layer). A GGUF matrix in a
   * ggml block format is uploaded as its bytes (see LlamaLoadOptions.dequantize).
   */
  static async load(gpu: Gpu, source: WeightSource, o: LlamaLoadOptions = {}): Promise<LlamaGpu> {
    const c = source.config;
    const weights = new Map<string, Tensor>();
    // Every tensor the family's block reads (rope_freqs is config: ropeFreqFactors).
    const need = [...expectedShapes(c).keys()].filter((n) => n !== ROPE_FREQS);
    const have = new Set(source.names());
    for (const n of need) {
      if (!have.has(n)) throw new PeftError("MODEL_MISSING_TENSOR", `${source.name}: tensor ${n} is missing`);
    }
    const q = o.quantize;
    const quantized = new Map<string, QuantizedLinear>();
    const isLinear = (n: string) => /^blk\.\d+\.(attn_[qkv]|attn_qkv|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$/.test(n);
    const toQuantize = (n: string) => !!q && (isLinear(n) || (q.head && n === "output.weight"));
    const compute = o.computeDtype ?? "f32";
    const toF16 = (n: string) => compute === "f16" && (isLinear(n) || n === "output.weight");
    const keepGgml = (n: string, shape: number[]) => {
      const type = source.ggmlType?.(n);
      return !o.dequantize && type !== undefined && !!source.readRaw && keepsGgmlFormat(type, shape) ? type : undefined;
    };
    // Quantized weights of one layer share a small tables tensor: upload them per layer group.
    let group: { name: string; state: QuantState4bit; shape: [number, number] }[] = [];
    let groupKey = "";
    const flushGroup = () => {
      if (!group.length) return;
      const qws = uploadFourBit(gpu, group.map((g) => ({ state: g.state, shape: g.shape, name: `${source.name}: ${g.name}` })));
      group.forEach((g, i) => quantized.set(g.name, qws[i]));
      group = [];
    };
    const nonFinite = (n: string, i: number, v: number) => new PeftError("MODEL_BAD_WEIGHT", `${tensorLabel(source, n)} has a non-finite value (${v}) at index ${i}`);
    try {
      for (const n of need) {
        const shape = source.shape(n);
        const ggml = toQuantize(n) ? undefined : keepGgml(n, shape);
        if (ggml !== undefined) {
          const bytes = await source.readRaw!(n);
          const label = tensorLabel(source, n);
          const bad = ggmlFirstNonFinite(ggml, bytes, label);
          if (bad >= 0) throw nonFinite(n, bad, (await source.readF32(n))[bad]);
          quantized.set(n, GgmlLinear.upload(gpu, ggml, bytes, shape, label));
          continue;
        }
        const data = await source.readF32(n);
        for (let i = 0; i < data.length; i++) {
          if (!Number.isFinite(data[i])) throw nonFinite(n, i, data[i]);
        }
        if (q && toQuantize(n)) {
          const key = n.split(".").slice(0, 2).join(".");
          if (key !== groupKey) flushGroup();
          groupKey = key;
          const state = quantize4bit(data, { type: q.type, blocksize: q.blocksize, doubleQuant: q.doubleQuant, name: `${source.name}: ${n}`, shape });
          group.push({ name: n, state, shape: [shape[0], shape[1]] });
        } else if (toF16(n)) {
          weights.set(n, gpu.upload(f32ToF16Array(data), shape, "f16", "weights"));
        } else {
          weights.set(n, gpu.upload(data, shape, "f32", "weights"));
        }
      }
      flushGroup();
    } catch (e) {
      for (const t of weights.values()) t.release();
      for (const w of quantized.values()) w.release();
      throw e;
    }
    return new LlamaGpu(gpu, c, weights, quantized, q, compute);
  }

  /**
   * The same weights seen through another GPU object (the memory planner's counting GPU runs the
   * training pass against it without touching the device). Shares the weight maps; no KV cache.
   */
  withGpu(gpu: Gpu): LlamaGpu {
    return new LlamaGpu(gpu, this.config, this.weights, this.quantized, this.quantSpec, this.computeDtype);
  }

  /** An f32 weight (embeddings, norms, an f32 linear) or an f16 linear. */
  w(name: string): Tensor {
    const t = this.weights.get(name);
    if (!t) {
      const qw = this.quantized.get(name);
      if (qw) throw new PeftError("MODEL_QUANTIZED", `${name} is kept quantized (${qw.format}); use lw(name) for linear weights`);
      throw new PeftError("MODEL_MISSING_TENSOR", `no weight ${name}`);
    }
    return t;
  }

  /** A linear weight (or the embedding table): f32, f16 or quantized. */
  lw(name: string): LinearWeight {
    const t = this.weights.get(name) ?? this.quantized.get(name);
    if (!t) throw new PeftError("MODEL_MISSING_TENSOR", `no weight ${name}`);
    return t;
  }

  /** Replaces a linear weight (merging into a quantized base); the old one is not released. */
  setLinear(name: string, w: LinearWeight): void {
    if (isQuantized(w)) {
      this.weights.delete(name);
      this.quantized.set(name, w);
    } else {
      this.quantized.delete(name);
      this.weights.set(name, w);
    }
  }

  /** Parameter count of every base weight. */
  parameterCount(): number {
    let n = 0;
    for (const t of this.weights.values()) n += t.size;
    for (const w of this.quantized.values()) n += w.shape[0] * w.shape[1];
    return n;
  }

  /** Makes sure the KV cache holds `tokens` positions (grows by copying). */
  private ensureCache(tokens: number): KvCache {
    const c = this.config;
    if (tokens > c.contextLength) {
      throw new PeftError("CONTEXT_OVERFLOW", `sequence of ${tokens} tokens exceeds the model's context length ${c.contextLength}`);
    }
    if (this.cache && this.cache.capacity >= tokens) return this.cache;
    const capacity = Math.min(c.contextLength, Math.max(tokens, 2 * (this.cache?.capacity ?? 64)));
    const kvDim = c.nKvHeads * c.headDim;
    const next: KvCache = { capacity, k: [], v: [] };
    for (let l = 0; l < c.nLayers; l++) {
      const k = this.gpu.tensor([capacity, kvDim], "f32", "kv_cache");
      const v = this.gpu.tensor([capacity, kvDim], "f32", "kv_cache");
      if (this.cache) {
        this.gpu.copy(this.cache.k[l], k, this.cache.capacity * kvDim * 4);
        this.gpu.copy(this.cache.v[l], v, this.cache.capacity * kvDim * 4);
      }
      next.k.push(k);
      next.v.push(v);
    }
    if (this.cache) {
      this.gpu.flush();
      for (const t of [...this.cache.k, ...this.cache.v]) t.release();
    }
    return this.cache = next;
  }

  /** Frees the KV cache (e.g. between requests of very different lengths). */
  dropCache(): void {
    if (!this.cache) return;
    this.gpu.flush();
    for (const t of [...this.cache.k, ...this.cache.v]) t.release();
    this.cache = null;
  }

  /** The GPU backend of the block's ops over these weights. */
  backend(): GpuBackend {
    return new GpuBackend(this);
  }

  /**
   * Runs `ids` at positions pos0.. through the model, writing their K/V into the cache, and
   * returns the logits of the last token [1, V] (or all tokens [T, V] when allLogits).
   * Caller releases the returned tensor.
   */
  forward(ids: number[], pos0: number, opts: ForwardOptions = {}): Tensor {
    const c = this.config;
    if (ids.length === 0) throw new PeftError("BAD_INPUT", "forward: no tokens");
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new PeftError("BAD_TOKEN", `token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
    }
    const idT = this.gpu.upload(new Uint32Array(ids), [ids.length], "u32", "activations");
    const logits = this.forwardIds(idT, ids.length, pos0, opts);
    idT.release();
    return logits;
  }

  /**
   * `forward` for ids already on the GPU (u32 [T]), e.g. a token sampled on the GPU by the
   * previous step: decoding then needs no host round trip per token. Ids must be < vocabSize.
   *
   * pos0 is the KV-cache row of the first id. pos0 = 0 starts a sequence: the hooks' virtual
   * tokens (prompt tuning's embeddings, prefix tuning's keys and values) take rows 0..P-1 and the
   * ids follow at P, so the next call continues at P + T.
   */
  forwardIds(idT: Tensor, T: number, pos0: number, opts: ForwardOptions = {}): Tensor {
    const hooks = opts.hooks ?? NO_HOOKS;
    const P = pos0 === 0 ? virtualTokens(hooks) : 0;
    const cache = this.ensureCache(pos0 + P + T);
    const g = new Graph(this.backend(), { grad: false, training: false, seed: 0 });
    try {
      // Prefix keys and values go into the cache once; later steps read them from there.
      const ctx: BlockContext<Tensor> = { g, config: this.config, hooks: { ...hooks, kvPrefix: undefined }, positions: null! };
      let rows = T, start = pos0;
      if (P && hooks.kvPrefix) {
        this.writePrefix(g, hooks, cache);
        start = P;
      } else if (P) {
        rows = P + T;
      }
      ctx.positions = new CachedPositions(this, cache, rows, start);
      let x = blocks(ctx, embed(ctx, idT, 1, P > 0));
      if (opts.allLogits) x = dropVirtualRows(g, x, rows - T, 1);
      // Only the rows whose logits are wanted go through the final norm and the head.
      else if (x.rows > 1) {
        const last = g.sliceRows(x, x.rows - 1, 1);
        g.free(x);
        x = last;
      }
      const xf = finalNorm(ctx, x);
      const logits = linear(ctx, xf, headSite(this.config));
      g.free(xf);
      return g.detach(logits);
    } finally {
      g.dispose();
    }
  }

  /** Writes the hooks' key/value prefix of every layer into cache rows 0..P-1. */
  private writePrefix(g: Graph<Tensor>, hooks: Hooks<Tensor>, cache: KvCache): void {
    const kvDim = this.config.nKvHeads * this.config.headDim;
    for (let l = 0; l < this.config.nLayers; l++) {
      const p = hooks.kvPrefix!(g, l);
      if (!p) continue;
      this.gpu.copy(p.k.value, cache.k[l], p.k.rows * kvDim * 4);
      this.gpu.copy(p.v.value, cache.v[l], p.v.rows * kvDim * 4);
      g.free(p.k);
      g.free(p.v);
    }
  }

  destroy(): void {
    this.dropCache();
    for (const t of this.weights.values()) t.release();
    for (const w of this.quantized.values()) w.release();
    this.weights.clear();
    this.quantized.clear();
  }
}

/** Inference positions: T new tokens at pos0, keys and values appended to the KV cache. */
class CachedPositions implements Positions<Tensor> {
  constructor(readonly llama: LlamaGpu, readonly cache: KvCache, readonly T: number, readonly pos0: number) {}
  rope(g: Graph<Tensor>, x: V<Tensor>, nHeads: number): V<Tensor> {
    return g.rope(x, { ...ropeSettings(this.llama.config), N: this.T, T: this.T, pos0: this.pos0, nHeads });
  }
  /** Prefix keys and values are already in the cache (forwardIds writes them when a sequence starts). */
  attention(g: Graph<Tensor>, l: number, q: V<Tensor>, k: V<Tensor>, v: V<Tensor>): V<Tensor> {
    const c = this.llama.config, gpu = this.llama.gpu, { T, pos0, cache } = this;
    const kvDim = c.nKvHeads * c.headDim;
    gpu.copy(k.value, cache.k[l], T * kvDim * 4, 0, pos0 * kvDim * 4);
    gpu.copy(v.value, cache.v[l], T * kvDim * 4, 0, pos0 * kvDim * 4);
    g.free(k);
    g.free(v);
    const y = g.attention(q, g.constant(cache.k[l]), g.constant(cache.v[l]), {
      ...attentionSettings(c), B: 1, T, S: pos0 + T, kvStride: cache.capacity, pos0,
    });
    g.free(q);
    return y;
  }
}
