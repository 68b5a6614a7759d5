/**
 * One forward pass over a ragged batch (vLLM's flattened batch): several sequences, each with a
 * segment of new tokens (a prompt or a chunk of it, or the one token a decode step adds) at its
 * own positions, its keys and values in a paged KV cache, and its own adapter hooks. The block is
 * block.ts (the same code as one-at-a-time inference); only the positions (per-row rope, paged
 * attention) and the hooks (row groups) differ. Returns the logits of each segment's last row.
 */
import { PeftError } from "../errors.ts";
import type { Tensor } from "../gpu/gpu.ts";
import { loraGather, type LoraEntry, packLoraEntries } from "../kernels/lora_gather.ts";
import { packPagedMeta, pagedAttention, type PagedHeads, type PagedLayout, pagedWriteKv } from "../kernels/paged_attention.ts";
import { ropeRows } from "../kernels/rope_rows.ts";
import { attentionSettings, type BlockContext, blocks, finalNorm, headSite, linear, linearSite, type Positions, ropeSettings } from "./block.ts";
import { type LlamaConfig, linearModules } from "./config.ts";
import { Graph, type V } from "./graph.ts";
import type { LlamaGpu } from "./llama.ts";
import type { LoraBank } from "./lora_bank.ts";
import type { KvPool } from "./paged_kv.ts";
import { type LowRankBatch, lowRankRuns, rowGroupHooks, type RowGroup, sharesBaseWeights } from "./row_groups.ts";
import { type Hooks, type LinearSite, virtualTokens } from "./sites.ts";

export interface BatchSegment {
  /** New token ids of this step. */
  ids: number[];
  /** Position of ids[0]. A sequence's first segment starts at its virtual-token count P (0 without prompt/prefix hooks). */
  pos0: number;
  /** The sequence's blocks (covering every position this segment writes). */
  table: readonly number[];
  /** The sequence's adapter hooks. Segments with the same hooks object should be adjacent (one row group). */
  hooks: Hooks<Tensor>;
  /** First segment of the sequence: its virtual tokens (prompt / prefix tuning) go in first. */
  start: boolean;
}

export interface BatchForwardOptions {
  /** Bank for LoRA hooks: every LoRA row of a site in one gathered dispatch (else each group's hook runs on its rows). */
  bank?: LoraBank;
  /**
   * The token ids already on the GPU (u32 [segments], e.g. sampled by the previous step), for a
   * decode step where every segment is one token: the segments' `ids` are then placeholders.
   */
  ids?: Tensor;
}

/** Logits [segments.length, V]: row s is the next-token logits after segment s. Caller releases. */
export function forwardBatch(llama: LlamaGpu, pool: KvPool, segments: readonly BatchSegment[], o: BatchForwardOptions = {}): Tensor {
  const c = llama.config, gpu = llama.gpu;
  if (!segments.length) throw new PeftError("BAD_INPUT", "forwardBatch: no segments");
  // Rows: each segment's virtual-token embeddings (prompt tuning, first segment) then its tokens.
  const seq: number[] = [], pos: number[] = [], lastRows: number[] = [];
  const rowGroups: RowGroup<Tensor>[] = [], headGroups: RowGroup<Tensor>[] = [];
  const prefixWrites: { s: number; P: number; hooks: Hooks<Tensor> }[] = [];
  const embedParts: { s: number; P: number; hooks: Hooks<Tensor> }[] = [];
  segments.forEach((sg, s) => {
    for (const id of sg.ids) {
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new PeftError("BAD_TOKEN", `token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
    }
    if (!sg.ids.length) throw new PeftError("BAD_INPUT", `forwardBatch: segment ${s} has no tokens`);
    const P = sg.start ? virtualTokens(sg.hooks) : 0;
    const embedded = P > 0 && !!sg.hooks.embedPrefix;
    if (sg.start && sg.pos0 !== P) throw new PeftError("BAD_INPUT", `forwardBatch: segment ${s} starts a sequence with ${P} virtual tokens at position ${sg.pos0}`);
    if (P > 0 && embedded) embedParts.push({ s, P, hooks: sg.hooks });
    else if (P > 0) prefixWrites.push({ s, P, hooks: sg.hooks });
    const first = embedded ? 0 : sg.pos0, n = sg.ids.length + (embedded ? P : 0);
    const row0 = seq.length;
    for (let t = 0; t < n; t++) seq.push(s), pos.push(first + t);
    lastRows.push(seq.length - 1);
    const g = rowGroups[rowGroups.length - 1];
    if (g && g.hooks === sg.hooks) {
      g.rows += n;
      headGroups[headGroups.length - 1].rows++;
    } else {
      rowGroups.push({ row0, rows: n, hooks: sg.hooks });
      headGroups.push({ row0: s, rows: 1, hooks: sg.hooks });
    }
  });
  const layout: PagedLayout = { blockSize: pool.blockSize, seq, pos, tables: segments.map((sg) => sg.table) };
  const { nHeads, nKvHeads, headDim, window } = attentionSettings(c);
  const heads: PagedHeads = { nHeads, nKvHeads, headDim, window };
  const g = new Graph(llama.backend(), { grad: false, training: false, seed: 0 });
  const uploads: Tensor[] = [];
  const upload = (a: Uint32Array) => {
    const t = gpu.upload(a, [a.length], "u32", "activations");
    uploads.push(t);
    return t;
  };
  try {
    // One group whose hooks replace weights (its own sub-batch) runs them as they are; otherwise
    // row groups, with LoRA through the bank (faster than per-group matmuls even for one group).
    const plain = rowGroups.length === 1 && (!o.bank || !sharesBaseWeights(rowGroups[0].hooks, c));
    const lowRank = o.bank && !plain
      ? planLowRank(o.bank, [{ groups: rowGroups, sites: blockSites(c) }, { groups: headGroups, sites: [headSite(c)] }], upload)
      : undefined;
    const ctx: BlockContext<Tensor> = {
      g,
      config: c,
      hooks: plain ? { ...rowGroups[0].hooks, kvPrefix: undefined, embedPrefix: undefined, virtualTokens: 0 } : rowGroupHooks(rowGroups, lowRank),
      positions: new PagedPositions(llama, pool, layout, upload(new Uint32Array(pos)), Math.max(...pos), heads, upload(packPagedMeta(layout).meta)),
    };
    // Prefix tuning's keys and values go into the first P positions of their sequences, once.
    for (const w of prefixWrites) {
      const prefixLayout: PagedLayout = { blockSize: pool.blockSize, seq: Array(w.P).fill(0), pos: Array.from({ length: w.P }, (_, i) => i), tables: [segments[w.s].table] };
      for (let l = 0; l < c.nLayers; l++) {
        const p = w.hooks.kvPrefix?.(g, l);
        if (!p) continue;
        pagedWriteKv(gpu, p.k.value, p.v.value, pool.k[l], pool.v[l], prefixLayout, heads);
        g.free(p.k);
        g.free(p.v);
      }
    }
    if (o.ids && (embedParts.length || segments.some((sg) => sg.ids.length !== 1) || o.ids.dtype !== "u32" || o.ids.size < segments.length)) {
      throw new PeftError("BAD_INPUT", "forwardBatch: GPU ids need a decode step (one token per segment, no virtual tokens) and a u32 tensor of one id per segment");
    }
    const ids = o.ids ?? upload(Uint32Array.from(segments.flatMap((sg) => sg.ids)));
    let x = g.embedding(g.constant(llama.w("token_embd.weight")), ids);
    if (embedParts.length) x = withVirtualRows(g, x, segments, embedParts);
    x = blocks(ctx, x);
    const last = g.embedding(x, upload(Uint32Array.from(lastRows)));
    g.free(x);
    const headCtx = { ...ctx, hooks: plain ? ctx.hooks : rowGroupHooks(headGroups, lowRank) };
    const xf = finalNorm(headCtx, last);
    const logits = linear(headCtx, xf, headSite(c));
    g.free(xf);
    return g.detach(logits);
  } finally {
    g.dispose();
    gpu.flush();
    for (const t of uploads) t.release();
  }
}

/** x's token rows with the virtual-token embeddings of the segments that start with prompt tuning before them. */
function withVirtualRows(g: Graph<Tensor>, x: V<Tensor>, segments: readonly BatchSegment[], parts: { s: number; P: number; hooks: Hooks<Tensor> }[]): V<Tensor> {
  const pieces: V<Tensor>[] = [];
  let row = 0;
  segments.forEach((sg, s) => {
    const p = parts.find((q) => q.s === s);
    if (p) pieces.push(p.hooks.embedPrefix!(g));
    pieces.push(g.sliceRows(x, row, sg.ids.length));
    row += sg.ids.length;
  });
  const out = g.concatRows(pieces);
  for (const v of pieces) g.free(v);
  g.free(x);
  return out;
}

/**
 * LoRA deltas through the bank: the entries of every site of the pass are worked out and uploaded
 * once before the pass (an upload submits the commands before it: one per site would cost a
 * submit each), then each site is one gathered dispatch pair.
 */
function planLowRank(bank: LoraBank, passes: { groups: RowGroup<Tensor>[]; sites: LinearSite[] }[], upload: (a: Uint32Array) => Tensor): LowRankBatch<Tensor> | undefined {
  const plan = new Map<string, { entries: LoraEntry[]; base: number; total: number }>();
  let gen;
  do {
    gen = bank.generation;
    plan.clear();
    let base = 0;
    for (const { groups, sites } of passes) {
      for (const site of sites) {
        const runs = lowRankRuns(groups, site);
        if (!runs.length) continue;
        const entries = runs.map((r) => ({ row0: r.row0, rows: r.rows, aOff: bank.offsetOf(r.lowRank.A), bOff: bank.offsetOf(r.lowRank.B), rank: r.lowRank.rank, scale: r.lowRank.scale }));
        plan.set(site.weight, { entries, base, total: 0 });
        base += entries.length;
      }
    }
  } while (gen !== bank.generation); // a bank reset voids offsets handed out before it
  if (!plan.size) return undefined;
  const rowsOf = (groups: RowGroup<Tensor>[]) => groups.reduce((n, gr) => Math.max(n, gr.row0 + gr.rows), 0);
  const packed: Uint32Array[] = [];
  for (const { groups, sites } of passes) {
    for (const site of sites) {
      const p = plan.get(site.weight);
      if (!p) continue;
      const { data, total } = packLoraEntries(p.entries, rowsOf(groups), site.inFeatures, site.outFeatures, bank.tensor.size);
      p.total = total;
      packed.push(data);
    }
  }
  const all = new Uint32Array(packed.reduce((n, a) => n + a.length, 0));
  packed.reduce((o, a) => (all.set(a, o), o + a.length), 0);
  const meta = upload(all);
  return (g: Graph<Tensor>, y: V<Tensor>, x: V<Tensor>, site: LinearSite) => {
    const p = plan.get(site.weight);
    if (!p) throw new PeftError("BAD_INPUT", `forwardBatch: no LoRA plan for ${site.weight}`);
    // Accumulate in place when nothing else holds y (inference: the fresh output of the base linear).
    let out = y;
    if (!(y.owned && y.refs === 1)) {
      out = g.replaceRows(y, []);
      g.free(y);
    }
    loraGather(bank.gpu, x.value, out.value, bank.tensor, p.entries, { R: x.rows, K: site.inFeatures, N: site.outFeatures, packed: { tensor: meta, base: p.base, total: p.total } });
    return out;
  };
}

/** Every linear site of the blocks. */
function blockSites(c: LlamaConfig): LinearSite[] {
  const out: LinearSite[] = [];
  for (let l = 0; l < c.nLayers; l++) for (const m of linearModules(c)) out.push(linearSite(c, l, m));
  return out;
}

/** Positions of a ragged batch: rope at each row's position, attention through the block tables. */
class PagedPositions implements Positions<Tensor> {
  constructor(
    readonly llama: LlamaGpu,
    readonly pool: KvPool,
    readonly layout: PagedLayout,
    readonly positions: Tensor,
    readonly maxPos: number,
    readonly heads: PagedHeads,
    /** The packed layout on the GPU, shared by every layer's dispatches. */
    readonly meta: Tensor,
  ) {}
  rope(g: Graph<Tensor>, x: V<Tensor>, nHeads: number): V<Tensor> {
    const out = g.be.copy(x.value);
    g.free(x);
    const { headDim, ropeDim, base, neox, freqFactors } = ropeSettings(this.llama.config);
    ropeRows(this.llama.gpu, out, this.positions, this.maxPos, { nHeads, headDim, ropeDim, base, neox, freqFactors });
    return g.input(out);
  }
  attention(g: Graph<Tensor>, l: number, q: V<Tensor>, k: V<Tensor>, v: V<Tensor>): V<Tensor> {
    const gpu = this.llama.gpu;
    pagedWriteKv(gpu, k.value, v.value, this.pool.k[l], this.pool.v[l], this.layout, this.heads, this.meta);
    g.free(k);
    g.free(v);
    const y = pagedAttention(gpu, q.value, this.pool.k[l], this.pool.v[l], this.layout, this.heads, this.meta);
    g.free(q);
    return g.input(y);
  }
}
