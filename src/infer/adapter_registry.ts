/**
 * Adapter routing for many adapters over one base model: a catalogue of known adapters (PEFT
 * directories on disk, or adapters made in memory), of which an LRU set is resident on the GPU
 * within a byte budget. `acquire(id)` loads an adapter from disk on first use (evicting the least
 * recently used idle ones when over budget) and pins it until the lease is released, so an
 * adapter is never freed or evicted while a generation uses it. Deleting a pinned adapter takes
 * effect when its last lease ends. The forward pass applies adapters unmerged (y = W x + s·B(A x)),
 * so every request shares the base weights.
 */
import { PeftError } from "../errors.ts";
import type { Adapter } from "../peft/adapter.ts";
import type { PeftModel } from "../peft/peft_model.ts";

/** Adapter ids: 1-64 characters of A-Z a-z 0-9 _ . -, not starting with "." or "-" (no "..", no paths). */
export const ADAPTER_ID_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

export function checkAdapterId(id: unknown): string {
  if (typeof id !== "string" || !ADAPTER_ID_PATTERN.test(id)) {
    throw new PeftError(
      "BAD_ADAPTER_NAME",
      `adapter id ${JSON.stringify(id)?.slice(0, 80)} must be 1-64 characters of A-Z a-z 0-9 _ . - and start with a letter, digit or _`,
    );
  }
  return id;
}

export interface AdapterInfo {
  id: string;
  /** PEFT directory it loads from (absent for in-memory adapters). */
  dir?: string;
  resident: boolean;
  /** PEFT method (LORA, IA3, LN_TUNING, BITFIT, PARTIAL). */
  peft_type?: string;
  r?: number;
  lora_alpha?: number;
  target_modules?: string[];
  /** Bytes of A and B on the GPU (f32), once known (after the first load). */
  bytes?: number;
  trainableParameters?: number;
  /** Requests currently using it. */
  inUse: number;
}

interface Entry {
  id: string;
  dir?: string;
  /** Where a store-backed adapter's directory comes from (a shared store's local cache). */
  source?: () => Promise<string>;
  pins: number;
  lastUsed: number;
  /** Set by remove() while pinned: freed when the last lease ends. */
  deleted: boolean;
  loading?: Promise<Adapter>;
  meta?: { peft_type: string; r?: number; lora_alpha?: number; target_modules?: string[]; bytes: number; trainableParameters: number };
}

export interface AdapterRegistryOptions {
  /** GPU bytes that resident adapters may hold together (default: unlimited). */
  budgetBytes?: number;
}

export interface AdapterLease {
  readonly id: string;
  release(): void;
}

export class AdapterRegistry {
  private readonly entries = new Map<string, Entry>();
  private clock = 0;
  readonly budgetBytes: number;
  /** Loads from disk so far (first use, or again after an eviction). */
  loads = 0;
  /** Acquisitions that found the adapter resident. */
  hits = 0;
  evictions = 0;

  constructor(readonly model: PeftModel, o: AdapterRegistryOptions = {}) {
    this.budgetBytes = o.budgetBytes ?? Infinity;
    if (!(this.budgetBytes > 0)) throw new PeftError("BAD_PARAMETER", `adapter budget must be > 0 bytes, got ${o.budgetBytes}`);
    // Adapters already on the model (made in memory) are resident and cannot be reloaded from disk.
    for (const [id, a] of model.adapters) {
      const e: Entry = { id, pins: 0, lastUsed: 0, deleted: false };
      this.describe(e, a);
      this.entries.set(id, e);
    }
  }

  has(id: string): boolean {
    const e = this.entries.get(id);
    return !!e && !e.deleted;
  }

  /** Registers a PEFT directory under `id` (loaded on first use). */
  register(id: string, dir: string): void {
    checkAdapterId(id);
    if (this.entries.has(id)) throw new PeftError("ADAPTER_EXISTS", `an adapter named ${id} already exists`);
    this.entries.set(id, { id, dir, pins: 0, lastUsed: 0, deleted: false });
  }

  /** Registers an adapter whose directory `source` provides when it is first used (an adapter store). */
  registerSource(id: string, source: () => Promise<string>): void {
    checkAdapterId(id);
    if (this.entries.has(id)) throw new PeftError("ADAPTER_EXISTS", `an adapter named ${id} already exists`);
    this.entries.set(id, { id, source, pins: 0, lastUsed: 0, deleted: false });
  }

  /** Registers `dir` under `id` and loads it now (validating it against the base model); unregistered again if it fails. */
  async add(id: string, dir: string): Promise<AdapterInfo> {
    this.register(id, dir);
    try {
      const lease = await this.acquire(id);
      lease.release();
    } catch (e) {
      const entry = this.entries.get(id);
      if (entry && entry.pins === 0) this.entries.delete(id);
      throw e;
    }
    return this.info(id);
  }

  /** Forgets an adapter and frees its GPU memory (at once, or when its last lease ends). */
  remove(id: string): void {
    const e = this.entries.get(id);
    if (!e || e.deleted) throw new PeftError("UNKNOWN_ADAPTER", `no adapter named ${id}`);
    e.deleted = true;
    if (e.pins === 0) this.drop(e);
  }

  list(): AdapterInfo[] {
    return [...this.entries.values()].filter((e) => !e.deleted).map((e) => this.info(e.id));
  }

  info(id: string): AdapterInfo {
    const e = this.entries.get(id);
    if (!e || e.deleted) throw new PeftError("UNKNOWN_ADAPTER", `no adapter named ${id}`);
    return { id, dir: e.dir, resident: this.model.adapters.has(id), inUse: e.pins, ...(e.meta ?? {}) };
  }

  /** GPU bytes of the resident adapters. */
  residentBytes(): number {
    let n = 0;
    for (const e of this.entries.values()) if (this.model.adapters.has(e.id)) n += e.meta?.bytes ?? 0;
    return n;
  }

  residentCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (this.model.adapters.has(e.id)) n++;
    return n;
  }

  /** Pins the adapter on the GPU (loading it if needed) until the lease is released. */
  async acquire(id: string): Promise<AdapterLease> {
    const e = this.entries.get(id);
    if (!e || e.deleted) throw new PeftError("UNKNOWN_ADAPTER", `no adapter named ${id} (known: ${this.list().map((a) => a.id).join(", ") || "none"})`);
    e.pins++;
    e.lastUsed = ++this.clock;
    try {
      if (this.model.adapters.has(id)) this.hits++;
      else {
        if (!e.dir && !e.source) throw new PeftError("UNKNOWN_ADAPTER", `adapter ${id} is no longer resident and has no directory to reload from`);
        e.loading ??= this.load(e).finally(() => e.loading = undefined);
        await e.loading;
      }
    } catch (err) {
      this.unpin(e);
      throw err;
    }
    let released = false;
    return {
      id,
      release: () => {
        if (released) return;
        released = true;
        this.unpin(e);
      },
    };
  }

  private async load(e: Entry): Promise<Adapter> {
    const a = await this.model.loadAdapter(e.id, e.dir ?? await e.source!());
    this.loads++;
    this.describe(e, a);
    this.evict();
    return a;
  }

  private describe(e: Entry, a: Adapter) {
    const c = a.config, t = c.target_modules;
    e.meta = {
      peft_type: a.peftType,
      r: typeof c.r === "number" ? c.r : undefined,
      lora_alpha: typeof c.lora_alpha === "number" ? c.lora_alpha : undefined,
      target_modules: t === undefined ? undefined : Array.isArray(t) ? [...t] : [String(t)],
      bytes: a.bytes,
      trainableParameters: a.trainableParameters,
    };
  }

  private unpin(e: Entry) {
    e.pins--;
    if (e.pins === 0 && e.deleted) this.drop(e);
    else this.evict();
  }

  private drop(e: Entry) {
    if (this.entries.get(e.id) === e) this.entries.delete(e.id);
    if (this.model.adapters.has(e.id)) this.model.deleteAdapter(e.id);
  }

  /** Frees least recently used idle adapters (that can be reloaded from disk) while over budget. */
  private evict() {
    if (this.budgetBytes === Infinity) return;
    while (this.residentBytes() > this.budgetBytes) {
      let victim: Entry | undefined;
      for (const e of this.entries.values()) {
        if (e.pins > 0 || !(e.dir || e.source) || e.loading || !this.model.adapters.has(e.id)) continue;
        if (!victim || e.lastUsed < victim.lastUsed) victim = e;
      }
      if (!victim) return; // everything resident is in use: allow the overshoot until leases end
      this.model.deleteAdapter(victim.id);
      this.evictions++;
    }
  }
}
