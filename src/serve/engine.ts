/**
 * The serving engine behind the HTTP app: one base model on the GPU, many adapters (an LRU of
 * resident ones, loaded from disk on first use), and one of two schedulers behind a bounded queue:
 *  - "continuous" (default): continuous batching (infer/batch_scheduler.ts): every running request
 *    is a row of one batched step, whatever adapter it uses, over a paged KV cache;
 *  - "off": one generation at a time on the model's own KV cache (the previous engine, kept for
 *    comparison in bench/serve.ts and as a fallback).
 */
import { PeftError } from "../errors.ts";
import { type FinishReason, type GeneratedPiece, type GenerationResult, piecesFromIds } from "../infer/generate.ts";
import { BatchScheduler, type BatchStats } from "../infer/batch_scheduler.ts";
import { type AdapterInfo, type AdapterLease, AdapterRegistry, checkAdapterId } from "../infer/adapter_registry.ts";
import type { Model } from "../api/model.ts";
import type { S3AdapterStore } from "./adapter_store.ts";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
  [k: string]: unknown;
}

export interface EngineRequest {
  /** Prompt token ids (from encodeText / encodeChat). */
  ids: number[];
  /** Adapter id, or undefined for the base model. */
  adapter?: string;
  /** Several adapters with weights (their LoRA deltas scaled), instead of `adapter`. */
  adapters?: { id: string; weight: number }[];
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  stop: string[];
  /** Aborts queueing or generation (client disconnect). */
  signal?: AbortSignal;
  /** Milliseconds for queueing + generation; the generation stops with finishReason "timeout". */
  timeoutMs?: number;
}

export type EngineFinishReason = FinishReason | "timeout";

export interface EngineResult extends Omit<GenerationResult, "finishReason"> {
  finishReason: EngineFinishReason;
  queueMs: number;
}

/** A generation that holds a slot: iterate `pieces` (its return value is the summary), then `release()`. */
export interface Generation {
  pieces: AsyncGenerator<GeneratedPiece, EngineResult>;
  /** Frees the slot and the adapter lease (idempotent; iterating to the end does it too). */
  release(): void;
}

export interface EngineStats {
  running: number;
  queued: number;
  maxQueue: number;
  adaptersKnown: number;
  adaptersResident: number;
  adapterBytes: number;
  adapterLoads: number;
  /** Adapter uses that found it resident (loads are the misses). */
  adapterHits: number;
  adapterEvictions: number;
  gpuBytes: number;
  gpuBytesByCategory: Record<string, number>;
  /** The continuous-batching scheduler's figures (absent when batching is off). */
  batch?: BatchStats;
}

/** What the HTTP app needs of an engine. */
export interface Engine {
  readonly modelId: string;
  readonly contextLength: number;
  readonly vocabSize: number;
  readonly baseParameters: number;
  /** Prompt text -> ids (BOS added). */
  encodeText(text: string): number[];
  /** Messages -> ids through the model's chat template (or the documented default). */
  encodeChat(messages: ChatMessage[]): number[];
  /** Waits for a slot (throws QUEUE_FULL at once when the queue is full) and pins the adapter. */
  start(req: EngineRequest): Promise<Generation>;
  adapters(): AdapterInfo[];
  hasAdapter(id: string): boolean;
  /** Registers a PEFT directory and loads it (validated against the base model); with a store, publishes it there. */
  addAdapter(id: string, dir: string): Promise<AdapterInfo>;
  deleteAdapter(id: string): void | Promise<void>;
  /** With a shared store: registers `id` if the store has it (true), false if not; throws when the store is down. */
  lookupAdapter?(id: string): Promise<boolean>;
  /** With a shared store: registers every adapter the store lists (store errors are not thrown). */
  refreshAdapters?(): Promise<void>;
  /** Readiness: the model is loaded and the store (if any) answers. */
  ready?(): Promise<{ ready: boolean; detail: string }>;
  stats(): EngineStats;
  /** Resolves when nothing is running or queued. */
  idle(): Promise<void>;
}

/**
 * The chat format used when the model has no chat template (stories260K has none):
 * each message as "<role>: <content>\n", then "assistant:" when a reply is wanted.
 */
export function defaultChatPrompt(messages: ChatMessage[], addGenerationPrompt = true): string {
  return messages.map((m) => `${m.role}: ${m.content}\n`).join("") + (addGenerationPrompt ? "assistant:" : "");
}

interface Waiter {
  resolve(): void;
  reject(e: unknown): void;
}

/** A counting semaphore with a bounded FIFO of waiters. */
class Slots {
  running = 0;
  readonly waiters: Waiter[] = [];
  private idleWaiters: (() => void)[] = [];
  constructor(readonly capacity: number, readonly maxQueue: number) {}

  acquire(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.running < this.capacity) {
      this.running++;
      return Promise.resolve();
    }
    if (this.waiters.length >= this.maxQueue) {
      return Promise.reject(new PeftError("QUEUE_FULL", `the server is busy: ${this.waiters.length} requests are already waiting`));
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        resolve: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
        reject,
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal.reason);
        this.checkIdle();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(w);
    });
  }

  release() {
    const next = this.waiters.shift();
    if (next) next.resolve(); // the slot passes straight to the next waiter
    else this.running--;
    this.checkIdle();
  }

  idle(): Promise<void> {
    if (this.running === 0 && this.waiters.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private checkIdle() {
    if (this.running === 0 && this.waiters.length === 0) {
      const list = this.idleWaiters;
      this.idleWaiters = [];
      for (const r of list) r();
    }
  }
}

export interface ModelEngineOptions {
  /** Name the base model is served under (e.g. "stories260K"). */
  modelId: string;
  /** Requests that may wait for a slot; more get QUEUE_FULL (HTTP 429). Default 64. */
  maxQueue?: number;
  /** GPU bytes resident adapters may hold together (LRU eviction beyond it). Default unlimited. */
  adapterBudgetBytes?: number;
  /** Jinja chat template for chat requests instead of the model's own (or of defaultChatPrompt when it has none). */
  chatTemplate?: string;
  /** "continuous" (default): requests share batched steps; "off": one generation at a time. */
  batching?: "continuous" | "off";
  /** Continuous batching: sequences per step (default 32). */
  maxBatch?: number;
  /** Continuous batching: tokens per step, decode rows and prefill chunks together (default 256). */
  maxStepTokens?: number;
  /** Continuous batching: KV cache blocks in the pool (default: 8 full contexts, at most 1 GiB). */
  kvBlocks?: number;
  /** Continuous batching: positions per KV cache block (default 16). */
  kvBlockSize?: number;
  /** Continuous batching: decode steps per host round trip when every row samples on the GPU (default 8). */
  gpuChunk?: number;
  /** A shared adapter store (S3-compatible): adapters uploaded through any replica are served by all. */
  store?: S3AdapterStore;
}

const checkAdapterIdOk = (id: string) => {
  try {
    checkAdapterId(id);
    return true;
  } catch {
    return false;
  }
};

export class TimeoutError extends Error {
  constructor(ms: number) {
    super(`the request timed out after ${ms} ms`);
    this.name = "TimeoutError";
  }
}

/** Engine over a loaded Model. */
export class ModelEngine implements Engine {
  readonly modelId: string;
  readonly registry: AdapterRegistry;
  private readonly slots: Slots;
  /** The continuous-batching scheduler (absent with batching "off"). */
  readonly batcher?: BatchScheduler;
  readonly store?: S3AdapterStore;

  private readonly chatTemplate?: string;

  constructor(readonly model: Model, o: ModelEngineOptions) {
    this.modelId = o.modelId;
    this.chatTemplate = o.chatTemplate;
    this.store = o.store;
    this.registry = new AdapterRegistry(model.peft, { budgetBytes: o.adapterBudgetBytes });
    // Batching off: one generation at a time on the model's one KV cache.
    this.slots = new Slots(1, o.maxQueue ?? 64);
    if ((o.batching ?? "continuous") === "continuous") {
      this.batcher = new BatchScheduler(model.llama, model.tokenizer.eosId, {
        maxBatch: o.maxBatch,
        maxStepTokens: o.maxStepTokens,
        maxQueue: o.maxQueue ?? 64,
        kv: { numBlocks: o.kvBlocks, blockSize: o.kvBlockSize },
        gpuChunk: o.gpuChunk,
      });
    }
  }

  get contextLength(): number {
    return this.model.config.contextLength;
  }

  get vocabSize(): number {
    return this.model.config.vocabSize;
  }

  get baseParameters(): number {
    return this.model.baseParameters();
  }

  encodeText(text: string): number[] {
    return this.model.encodePrompt(text);
  }

  encodeChat(messages: ChatMessage[]): number[] {
    const tok = this.model.tokenizer;
    try {
      return tok.encodeChat(messages, { addGenerationPrompt: true, template: this.chatTemplate });
    } catch (e) {
      if (!(e instanceof PeftError) || e.code !== "CHAT_TEMPLATE_MISSING") throw e;
    }
    return this.model.encodePrompt(defaultChatPrompt(messages));
  }

  async start(req: EngineRequest): Promise<Generation> {
    const ids = req.adapters ? req.adapters.map((a) => a.id) : req.adapter !== undefined ? [req.adapter] : [];
    for (const id of ids) {
      if (!this.registry.has(id)) throw new PeftError("UNKNOWN_ADAPTER", `no adapter named ${id}`);
    }
    if (req.ids.length === 0) throw new PeftError("BAD_PARAMETER", "the prompt is empty (no tokens)");
    if (req.ids.length >= this.contextLength) {
      throw new PeftError("CONTEXT_OVERFLOW", `the prompt has ${req.ids.length} tokens; the model's context length is ${this.contextLength}`);
    }
    const t0 = performance.now();
    // One signal for client aborts and the timeout.
    const ctl = new AbortController();
    const onAbort = () => ctl.abort(req.signal?.reason ?? new DOMException("aborted", "AbortError"));
    if (req.signal?.aborted) onAbort();
    req.signal?.addEventListener("abort", onAbort, { once: true });
    let timedOut = false;
    const timer = req.timeoutMs && req.timeoutMs > 0
      ? setTimeout(() => {
        timedOut = true;
        ctl.abort(new TimeoutError(req.timeoutMs!));
      }, req.timeoutMs)
      : undefined;
    const cleanup = () => {
      if (timer !== undefined) clearTimeout(timer);
      req.signal?.removeEventListener("abort", onAbort);
    };
    if (this.batcher) return await this.startBatched(req, ids, ctl, cleanup, () => timedOut, t0);
    try {
      await this.slots.acquire(ctl.signal);
    } catch (e) {
      cleanup();
      throw e;
    }
    const leases: AdapterLease[] = [];
    try {
      for (const id of ids) leases.push(await this.registry.acquire(id));
      // Refuse combinations a method cannot take (a weight on (IA)³, say) before anything is sent.
      if (req.adapters) this.model.peft.hooksFor(req.adapters.map((a) => ({ name: a.id, weight: a.weight })));
    } catch (e) {
      for (const l of leases) l.release();
      cleanup();
      this.slots.release();
      throw e;
    }
    const queueMs = performance.now() - t0;
    const release = releaseOnce(cleanup, leases, () => this.slots.release());
    const model = this.model;
    async function* pieces(): AsyncGenerator<GeneratedPiece, EngineResult> {
      try {
        const r = yield* model.generateStream(req.ids, {
          ...(req.adapters ? { adapters: req.adapters.map((a) => ({ name: a.id, weight: a.weight })) } : { adapter: req.adapter }),
          maxTokens: req.maxTokens,
          temperature: req.temperature,
          topK: req.topK,
          topP: req.topP,
          seed: req.seed,
          stop: req.stop,
          signal: ctl.signal,
        });
        return { ...r, finishReason: r.finishReason === "abort" && timedOut ? "timeout" : r.finishReason, queueMs };
      } finally {
        release();
      }
    }
    return { pieces: pieces(), release };
  }

  /** Pins the request's adapters and hands it to the batch scheduler; resolves once it joins the batch. */
  private async startBatched(req: EngineRequest, ids: string[], ctl: AbortController, cleanup: () => void, timedOut: () => boolean, t0: number): Promise<Generation> {
    const leases: AdapterLease[] = [];
    const release = releaseOnce(cleanup, leases);
    let ticket;
    try {
      for (const id of ids) leases.push(await this.registry.acquire(id));
      const hooks = this.model.peft.hooksFor(req.adapters ? req.adapters.map((a) => ({ name: a.id, weight: a.weight })) : req.adapter ?? []);
      ticket = this.batcher!.submit({
        ids: req.ids,
        hooks,
        maxTokens: req.maxTokens,
        sampling: { temperature: req.temperature, topK: req.topK, topP: req.topP, seed: req.seed },
        signal: ctl.signal,
      });
      await ticket.admitted;
    } catch (e) {
      ticket?.cancel();
      release();
      throw e;
    }
    const queueMs = performance.now() - t0;
    const tok = this.model.tokenizer;
    const source = ticket.ids;
    const t = ticket;
    async function* pieces(): AsyncGenerator<GeneratedPiece, EngineResult> {
      try {
        const r = yield* piecesFromIds(tok, req.ids, source, { maxTokens: req.maxTokens, stop: req.stop, signal: ctl.signal });
        return { ...r, finishReason: r.finishReason === "abort" && timedOut() ? "timeout" : r.finishReason, queueMs };
      } finally {
        t.cancel();
        release();
      }
    }
    return {
      pieces: pieces(),
      release: () => {
        t.cancel();
        release();
      },
    };
  }

  adapters(): AdapterInfo[] {
    return this.registry.list();
  }

  hasAdapter(id: string): boolean {
    return this.registry.has(id);
  }

  async addAdapter(id: string, dir: string): Promise<AdapterInfo> {
    checkAdapterId(id);
    if (this.store && await this.store.manifest(id)) throw new PeftError("ADAPTER_EXISTS", `an adapter named ${id} already exists in the store`);
    const info = await this.registry.add(id, dir); // validated against the base model before anyone else can see it
    if (this.store) {
      try {
        await this.store.put(id, dir);
      } catch (e) {
        this.registry.remove(id);
        throw e;
      }
    }
    return info;
  }

  async deleteAdapter(id: string): Promise<void> {
    if (!this.registry.has(id)) throw new PeftError("UNKNOWN_ADAPTER", `no adapter named ${id}`);
    await this.store?.delete(id);
    this.registry.remove(id);
  }

  async lookupAdapter(id: string): Promise<boolean> {
    if (this.registry.has(id)) return true;
    if (!this.store || !(await this.store.manifest(id))) return false;
    if (!this.registry.has(id)) this.registerFromStore(id);
    return true;
  }

  async refreshAdapters(): Promise<void> {
    if (!this.store) return;
    let ids: string[];
    try {
      ids = await this.store.list();
    } catch {
      return; // the store is down: list what is known (GET /ready says why)
    }
    for (const id of ids) if (!this.registry.has(id) && checkAdapterIdOk(id)) this.registerFromStore(id);
  }

  private registerFromStore(id: string) {
    const store = this.store!;
    this.registry.registerSource(id, () => store.fetch(id));
  }

  async ready(): Promise<{ ready: boolean; detail: string }> {
    if (!this.store) return { ready: true, detail: "model loaded" };
    try {
      await this.store.ping();
      return { ready: true, detail: `model loaded; adapter store ${this.store.description} reachable` };
    } catch (e) {
      return { ready: false, detail: e instanceof Error ? e.message : String(e) };
    }
  }

  stats(): EngineStats {
    const b = this.batcher?.stats();
    return {
      running: b ? b.running : this.slots.running,
      queued: b ? b.queued : this.slots.waiters.length,
      maxQueue: b ? b.maxQueue : this.slots.maxQueue,
      batch: b,
      adaptersKnown: this.registry.list().length,
      adaptersResident: this.registry.residentCount(),
      adapterBytes: this.registry.residentBytes(),
      adapterLoads: this.registry.loads,
      adapterHits: this.registry.hits,
      adapterEvictions: this.registry.evictions,
      gpuBytes: this.model.gpu.bytesHeld(),
      gpuBytesByCategory: this.model.memoryReport(),
    };
  }

  idle(): Promise<void> {
    return this.batcher ? this.batcher.idle() : this.slots.idle();
  }

  /** Frees the scheduler's KV pool and LoRA bank (the model stays loaded). */
  close(): void {
    this.batcher?.destroy();
  }
}

/** A release callback that runs once however often it is called: the request's cleanup, its adapter leases, then `more`. */
function releaseOnce(cleanup: () => void, leases: AdapterLease[], more?: () => void): () => void {
  let released = false;
  return () => {
    if (released) return;
    released = true;
    cleanup();
    for (const l of leases) l.release();
    more?.();
  };
}
