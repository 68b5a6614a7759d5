/**
 * Continuous batching (Orca's iteration-level scheduling, vLLM's paged cache): requests join the
 * running batch at token boundaries and leave when done, every step is one forward over a ragged
 * batch (model/batch_forward.ts) of decode rows and prefill chunks, whatever adapter each row uses.
 *
 *  - Admission is FIFO: the oldest waiting request joins when the batch has room (maxBatch) and
 *    the KV pool has the blocks for its whole request (prompt, virtual tokens, max_tokens); a
 *    request that could never fit is refused at once (KV_CACHE_FULL), a full queue too (QUEUE_FULL).
 *  - Each step has a token budget: decode rows first (one token each, so running sequences are
 *    never starved), then prefill chunks of the oldest newcomers in what is left.
 *  - Rows whose adapters replace base or norm weights (partial fine-tuning, LN tuning) cannot
 *    share the base computation: each such adapter's rows run as a batch of their own in the step.
 *  - Cancelling (a client gone, a timeout) frees the sequence's blocks at once.
 * Sampling happens on the host from each row's logits, per request: greedy, or the GPU sampler's
 * exact Gumbel draw (sampleReference) when only a temperature is set, else the host sampler.
 */
import { PeftError } from "../errors.ts";
import type { Tensor } from "../gpu/gpu.ts";
import { rowSamplingParams, sampleReference, sampleRowsOnGpu } from "../kernels/sample.ts";
import { type BatchSegment, forwardBatch } from "../model/batch_forward.ts";
import type { LlamaGpu } from "../model/llama.ts";
import { LoraBank } from "../model/lora_bank.ts";
import { KvPool, type KvPoolOptions } from "../model/paged_kv.ts";
import { sharesBaseWeights } from "../model/row_groups.ts";
import { type Hooks, virtualTokens } from "../model/sites.ts";
import { argmax, Sampler, type SamplingOptions, validateSampling } from "./sampler.ts";

export interface BatchSchedulerOptions {
  /** Sequences in the running batch at most (default 32). */
  maxBatch?: number;
  /** Tokens one step forwards at most, decode rows and prefill chunks together (default 256). */
  maxStepTokens?: number;
  /** Requests that may wait for room; more get QUEUE_FULL (default 64). */
  maxQueue?: number;
  /** The paged KV cache's block size and count. */
  kv?: KvPoolOptions;
  /** Apply LoRA rows through the bank and the gathered kernel (default true). */
  gatheredLora?: boolean;
  /**
   * Decode steps per host round trip when every row samples on the GPU (default 8; 1 = sample
   * every step on the host). A new request waits at most this many steps to join.
   */
  gpuChunk?: number;
}

export interface BatchRequest {
  ids: number[];
  hooks: Hooks<Tensor>;
  maxTokens: number;
  sampling: SamplingOptions;
  /** Cancels the request (waiting or running); its blocks are freed at once. */
  signal?: AbortSignal;
}

export interface BatchStats {
  running: number;
  queued: number;
  maxQueue: number;
  kvBlocksUsed: number;
  kvBlocksTotal: number;
  kvBlockSize: number;
  steps: number;
  /** Rows of the last step (its batch size) and tokens generated so far. */
  lastBatchRows: number;
  tokensGenerated: number;
}

/** A request handed to the scheduler: `admitted` settles when it joins the batch (or is refused); `ids` yields its sampled ids. */
export interface BatchTicket {
  admitted: Promise<void>;
  ids: AsyncGenerator<number>;
  /** Leaves the batch (or the queue) now, freeing the blocks (idempotent; ending `ids` does it too). */
  cancel(): void;
}

interface Work {
  seq: Seq;
  seg: BatchSegment;
  /** The step's last row of this sequence is sampled (a decode row, or the last prefill chunk). */
  samples: boolean;
}

interface Seq {
  req: BatchRequest;
  /** Virtual tokens (prompt / prefix tuning) before the prompt. */
  P: number;
  /** Tokens this request generates at most (max_tokens, or fewer when the context ends first). */
  cap: number;
  blocksNeeded: number;
  blocks: number[];
  prefilled: number;
  made: number;
  last: number;
  out: number[];
  done: boolean;
  error?: unknown;
  wake?: () => void;
  admit: { resolve(): void; reject(e: unknown): void };
  sampler?: Sampler;
  sample: Required<SamplingOptions>;
  shareable: boolean;
  onAbort?: () => void;
}

export class BatchScheduler {
  readonly pool: KvPool;
  readonly bank?: LoraBank;
  readonly maxBatch: number;
  readonly maxStepTokens: number;
  readonly maxQueue: number;
  readonly gpuChunk: number;
  private readonly waiting: Seq[] = [];
  private readonly running: Seq[] = [];
  private loop: Promise<void> | null = null;
  private idleWaiters: (() => void)[] = [];
  private readonly shareCache = new WeakMap<Hooks<Tensor>, boolean>();
  private closed = false;
  steps = 0;
  lastBatchRows = 0;
  tokensGenerated = 0;

  constructor(readonly llama: LlamaGpu, readonly eosId: number, o: BatchSchedulerOptions = {}) {
    this.maxBatch = o.maxBatch ?? 32;
    this.maxStepTokens = o.maxStepTokens ?? 256;
    this.maxQueue = o.maxQueue ?? 64;
    this.gpuChunk = o.gpuChunk ?? 8;
    for (const [k, v] of [["maxBatch", this.maxBatch], ["maxStepTokens", this.maxStepTokens], ["gpuChunk", this.gpuChunk]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new PeftError("BAD_PARAMETER", `batch scheduler: ${k} must be an integer >= 1, got ${v}`);
    }
    this.pool = new KvPool(llama.gpu, llama.config, o.kv);
    if (o.gatheredLora ?? true) this.bank = new LoraBank(llama.gpu);
  }

  stats(): BatchStats {
    return {
      running: this.running.length,
      queued: this.waiting.length,
      maxQueue: this.maxQueue,
      kvBlocksUsed: this.pool.blocksUsed,
      kvBlocksTotal: this.pool.numBlocks,
      kvBlockSize: this.pool.blockSize,
      steps: this.steps,
      lastBatchRows: this.lastBatchRows,
      tokensGenerated: this.tokensGenerated,
    };
  }

  /** Queues a request (throws QUEUE_FULL, KV_CACHE_FULL or CONTEXT_OVERFLOW at once). */
  submit(req: BatchRequest): BatchTicket {
    if (this.closed) throw new PeftError("SHUTTING_DOWN", "the server is shutting down");
    const ctx = this.llama.config.contextLength;
    if (req.ids.length === 0) throw new PeftError("BAD_PARAMETER", "the prompt is empty (no tokens)");
    if (!Number.isInteger(req.maxTokens) || req.maxTokens < 1) throw new PeftError("BAD_PARAMETER", `maxTokens must be an integer >= 1, got ${req.maxTokens}`);
    const P = virtualTokens(req.hooks);
    if (P + req.ids.length >= ctx) {
      throw new PeftError("CONTEXT_OVERFLOW", `prompt has ${req.ids.length} tokens${P ? ` after the adapter's ${P} virtual tokens` : ""}; the model's context length is ${ctx}`);
    }
    const cap = Math.min(req.maxTokens, ctx - P - req.ids.length + 1);
    // Positions written: the virtual tokens, the prompt and every sampled id but the last.
    const blocksNeeded = this.pool.blocksFor(P + req.ids.length + cap - 1);
    if (blocksNeeded > this.pool.numBlocks) {
      throw new PeftError(
        "KV_CACHE_FULL",
        `the request needs ${blocksNeeded} KV cache blocks (${P + req.ids.length + cap - 1} positions) and the whole pool has ${this.pool.numBlocks}; send a shorter prompt or max_tokens`,
      );
    }
    if (this.waiting.length >= this.maxQueue) throw new PeftError("QUEUE_FULL", `the server is busy: ${this.waiting.length} requests are already waiting`);
    let admit!: Seq["admit"];
    const admitted = new Promise<void>((resolve, reject) => admit = { resolve, reject });
    admitted.catch(() => {}); // the caller may never await it (it also learns through ids)
    const sample = validateSampling(req.sampling);
    const seq: Seq = {
      req, P, cap, blocksNeeded, blocks: [], prefilled: 0, made: 0, last: -1, out: [], done: false, admit, sample,
      sampler: sample.temperature > 0 && (sample.topK > 0 || sample.topP < 1) ? new Sampler(sample) : undefined,
      shareable: this.shareable(req.hooks),
    };
    if (req.signal?.aborted) throw req.signal.reason ?? new DOMException("aborted", "AbortError");
    seq.onAbort = () => this.cancel(seq, req.signal?.reason ?? new DOMException("aborted", "AbortError"));
    req.signal?.addEventListener("abort", seq.onAbort, { once: true });
    this.waiting.push(seq);
    this.kick();
    return { admitted, ids: this.idsOf(seq), cancel: () => this.cancel(seq, new DOMException("cancelled", "AbortError")) };
  }

  /** Resolves when nothing is running or waiting. */
  idle(): Promise<void> {
    if (!this.running.length && !this.waiting.length) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Refuses new requests; running and waiting ones finish (await idle()). */
  close(): void {
    this.closed = true;
  }

  destroy(): void {
    this.closed = true;
    for (const s of [...this.waiting, ...this.running]) this.cancel(s, new PeftError("SHUTTING_DOWN", "the server is shutting down"));
    this.pool.destroy();
    this.bank?.destroy();
  }

  private shareable(h: Hooks<Tensor>): boolean {
    let v = this.shareCache.get(h);
    if (v === undefined) this.shareCache.set(h, v = sharesBaseWeights(h, this.llama.config));
    return v;
  }

  private async *idsOf(seq: Seq): AsyncGenerator<number> {
    try {
      while (true) {
        if (seq.out.length) {
          yield seq.out.shift()!;
          continue;
        }
        if (seq.error !== undefined) throw seq.error;
        if (seq.done) return;
        await new Promise<void>((r) => seq.wake = r);
        seq.wake = undefined;
      }
    } finally {
      // The consumer stopped (EOS, a stop string, max_tokens, gone): leave the batch now.
      this.finish(seq);
    }
  }

  /** Ends a sequence: out of the batch or the queue, its blocks back in the pool. */
  private finish(seq: Seq): void {
    seq.done = true;
    const w = this.waiting.indexOf(seq);
    if (w >= 0) this.waiting.splice(w, 1);
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
    if (seq.blocks.length) {
      this.pool.free(seq.blocks);
      seq.blocks = [];
    }
    if (seq.onAbort) seq.req.signal?.removeEventListener("abort", seq.onAbort);
    seq.wake?.();
    this.checkIdle();
    this.kick(); // freed blocks may let a waiting request in
  }

  private cancel(seq: Seq, reason: unknown): void {
    if (seq.done) return;
    const queued = this.waiting.includes(seq);
    if (queued) seq.error = reason;
    seq.admit.reject(reason);
    this.finish(seq);
  }

  private checkIdle() {
    if (this.running.length || this.waiting.length) return;
    const list = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of list) r();
  }

  private kick() {
    if (this.loop || (!this.running.length && !this.waiting.length)) return;
    this.loop = (async () => {
      try {
        while (this.running.length || this.waiting.length) {
          this.admit();
          if (!this.running.length) break; // waiting for blocks that only a finishing request frees
          await this.step();
        }
      } catch (e) {
        // A GPU failure fails every request in flight (the device state cannot be trusted).
        for (const s of [...this.running, ...this.waiting]) {
          s.error = e;
          s.admit.reject(e);
          this.finish(s);
        }
      } finally {
        this.loop = null;
        this.checkIdle();
      }
    })();
  }

  private admit() {
    while (this.waiting.length && this.running.length < this.maxBatch) {
      const seq = this.waiting[0];
      const blocks = this.pool.allocate(seq.blocksNeeded);
      if (!blocks) return; // FIFO: the oldest request waits for blocks, later ones behind it
      this.waiting.shift();
      seq.blocks = blocks;
      this.running.push(seq);
      seq.admit.resolve();
    }
  }

  /** One step: decode rows, then prefill chunks in the budget left; one forward per batch class. */
  private async step(): Promise<void> {
    let budget = this.maxStepTokens;
    const work: Work[] = [];
    for (const seq of this.running) {
      if (seq.prefilled < seq.req.ids.length || seq.done) continue;
      work.push({ seq, seg: { ids: [seq.last], pos0: seq.P + seq.req.ids.length + seq.made - 1, table: seq.blocks, hooks: seq.req.hooks, start: false }, samples: true });
      budget--;
    }
    for (const seq of this.running) {
      if (seq.prefilled >= seq.req.ids.length || seq.done) continue;
      const start = seq.prefilled === 0;
      const extra = start && seq.req.hooks.embedPrefix ? seq.P : 0;
      const n = Math.min(seq.req.ids.length - seq.prefilled, budget - extra);
      if (n < 1 && work.length) break;
      const take = Math.max(1, n);
      const ids = seq.req.ids.slice(seq.prefilled, seq.prefilled + take);
      work.push({ seq, seg: { ids, pos0: seq.P + seq.prefilled, table: seq.blocks, hooks: seq.req.hooks, start }, samples: seq.prefilled + take === seq.req.ids.length });
      seq.prefilled += take;
      budget -= take + extra;
    }
    if (!work.length) return;
    const K = this.chunkSteps(work);
    if (K > 1) return await this.decodeChunk(this.ordered(work), K);
    // Batch classes: every row that shares the base weights in one forward (grouped by adapter),
    // each weight-replacing adapter's rows in a forward of their own.
    const classes = new Map<unknown, typeof work>();
    for (const w of work) {
      const key = w.seq.shareable ? "shared" : w.seq.req.hooks;
      if (!classes.has(key)) classes.set(key, []);
      classes.get(key)!.push(w);
    }
    const launched: { items: typeof work; logits: Tensor }[] = [];
    for (const list of classes.values()) {
      const items = this.ordered(list);
      launched.push({ items, logits: forwardBatch(this.llama, this.pool, items.map((w) => w.seg), { bank: this.bank }) });
    }
    this.steps++;
    this.lastBatchRows = work.reduce((n, w) => n + w.seg.ids.length, 0);
    const V = this.llama.config.vocabSize;
    for (const { items, logits } of launched) {
      let flat: Float32Array;
      try {
        flat = await this.llama.gpu.readF32(logits);
      } finally {
        logits.release();
      }
      items.forEach((w, row) => {
        if (!w.samples || w.seq.done) return;
        const logitsRow = flat.subarray(row * V, (row + 1) * V);
        this.accept(w.seq, logitsRow.some((x) => Number.isNaN(x)) ? -1 : this.sampleRow(w.seq, logitsRow));
      });
    }
  }

  /**
   * K decode steps of the same batch with one host round trip: each step's ids are sampled on
   * the GPU (per-row parameters) and feed the next step's embedding; the K·R ids are read back at
   * once. K never passes any row's remaining tokens (its reserved blocks end there); ids sampled
   * after a row's EOS are dropped.
   */
  private async decodeChunk(items: Work[], K: number): Promise<void> {
    const gpu = this.llama.gpu, V = this.llama.config.vocabSize, R = items.length;
    const next = gpu.upload(Uint32Array.from(items.map((w) => w.seq.last)), [R], "u32", "activations");
    const out = gpu.tensor([K * R], "u32");
    const params = gpu.upload(rowSamplingParams(items.map((w) => ({ ...w.seq.sample, step: w.seq.made }))), [4 * R], "u32", "activations");
    try {
      for (let j = 0; j < K; j++) {
        const logits = forwardBatch(this.llama, this.pool, items.map((w) => ({ ...w.seg, pos0: w.seg.pos0 + j })), { bank: this.bank, ids: next });
        sampleRowsOnGpu(gpu, logits, next, out, params, { V, R, slot: j, stepAdd: j });
        logits.release();
      }
      const ids = await gpu.read(out, K * R) as Uint32Array;
      this.steps += K;
      this.lastBatchRows = R;
      for (let j = 0; j < K; j++) items.forEach((w, r) => w.seq.done || this.accept(w.seq, ids[j * R + r]));
    } finally {
      for (const t of [next, out, params]) t.release();
    }
  }

  /** A sampled id for a running sequence (-1 or an id outside the vocabulary: NaN logits fail it alone). */
  private accept(seq: Seq, id: number): void {
    if (id < 0 || id >= this.llama.config.vocabSize) {
      // This request alone fails (an adapter with non-finite weights); the batch goes on.
      seq.error = new PeftError("BAD_TOKEN", "the logits of this request are NaN (an adapter with non-finite weights?): the sampled id would be outside the vocabulary");
      this.finish(seq);
      return;
    }
    seq.made++;
    seq.last = id;
    seq.out.push(id);
    this.tokensGenerated++;
    if (seq.made >= seq.cap || id === this.eosId) {
      // Nothing more to compute: the consumer drains `out`, then the sequence ends.
      seq.done = true;
      if (seq.blocks.length) this.pool.free(seq.blocks);
      seq.blocks = [];
      const r = this.running.indexOf(seq);
      if (r >= 0) this.running.splice(r, 1);
    }
    seq.wake?.();
  }

  /** Rows of one adapter next to each other (one row group each), in order of first appearance. */
  private ordered(list: Work[]): Work[] {
    const order = new Map<Hooks<Tensor>, number>();
    for (const w of list) if (!order.has(w.seq.req.hooks)) order.set(w.seq.req.hooks, order.size);
    return [...list].sort((a, b) => order.get(a.seq.req.hooks)! - order.get(b.seq.req.hooks)!);
  }

  /**
   * Decode steps to run before the next host round trip: more than one only when the step is
   * pure decode in one batch class, every row samples on the GPU (greedy or temperature alone),
   * and no waiting request could join now.
   */
  private chunkSteps(work: Work[]): number {
    if (!this.gpuChunk || work.some((w) => !w.samples || w.seg.start || w.seg.ids.length !== 1 || w.seq.sampler)) return 1;
    const shared = work[0].seq.shareable;
    if (work.some((w) => w.seq.shareable !== shared || (!shared && w.seq.req.hooks !== work[0].seq.req.hooks))) return 1;
    const w0 = this.waiting[0];
    if (w0 && this.running.length < this.maxBatch && this.pool.blocksFree >= w0.blocksNeeded) return 1;
    return Math.min(this.gpuChunk, ...work.map((w) => w.seq.cap - w.seq.made));
  }

  private sampleRow(seq: Seq, logits: Float32Array): number {
    const s = seq.sample;
    if (s.temperature === 0) return argmax(logits);
    if (seq.sampler) return seq.sampler.sample(logits);
    return sampleReference(logits, { V: logits.length, temperature: s.temperature, seed: s.seed, step: seq.made });
  }
}
