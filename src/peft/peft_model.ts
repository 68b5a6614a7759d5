/**
 * A base model with its adapters (HF PEFT's PeftModel over a PreTrainedModel): adapters by name,
 * the combination active by default, merging into the base weights and back, and PEFT's
 * add_weighted_adapter. Generation and training take the hooks it hands out; they never see a
 * method.
 */
import { PeftError } from "../errors.ts";
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import { toF16, toF32 } from "../kernels/convert_f16.ts";
import type { LlamaConfig } from "../model/config.ts";
import type { AdapterFiles } from "../io/peft_adapter.ts";
import type { LlamaGpu } from "../model/llama.ts";
import { isQuantized, type LinearWeight } from "../model/quantized.ts";
import { type Hooks, NO_HOOKS, stackHooks } from "../model/sites.ts";
import { Adapter } from "./adapter.ts";
import type { InitContext } from "./method.ts";
import { formatTrainableParameters } from "./targets.ts";

/** Which adapters a pass uses: none, one by name, or several with weights. */
export type AdapterSelection = string | readonly { name: string; weight?: number }[] | undefined;

interface Merged {
  adapter: Adapter;
  /** The base weights the merge replaced (restored exactly by unmerge). */
  originals: Map<string, LinearWeight>;
}

export class PeftModel {
  readonly adapters = new Map<string, Adapter>();
  private readonly merged = new Map<string, Merged>();
  /** Merge order, so unmerges that share weights happen last-in first-out. */
  private readonly mergeOrder: string[] = [];
  /** The adapters a pass uses when it names none (setAdapters). */
  private active: { name: string; weight: number }[] = [];

  constructor(readonly llama: LlamaGpu) {}

  get gpu(): Gpu {
    return this.llama.gpu;
  }
  get config(): LlamaConfig {
    return this.llama.config;
  }

  adapter(name: string): Adapter {
    const a = this.adapters.get(name);
    if (!a) {
      const hint = this.merged.has(name) ? " (it is merged into the base weights: unmerge it first)" : "";
      throw new PeftError("UNKNOWN_ADAPTER", `no adapter named ${name}${hint} (loaded: ${[...this.adapters.keys()].join(", ") || "none"})`);
    }
    return a;
  }

  isMerged(name: string): boolean {
    return this.merged.has(name);
  }

  private checkNewName(name: string) {
    if (typeof name !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
      throw new PeftError("BAD_ADAPTER_NAME", `adapter name ${JSON.stringify(name)} must be 1-64 characters of A-Z a-z 0-9 _ . -`);
    }
    if (this.adapters.has(name) || this.merged.has(name)) throw new PeftError("ADAPTER_EXISTS", `an adapter named ${name} already exists`);
  }

  /** A fresh adapter of any method (config.peft_type, default "LORA"), initialised from `seed`. */
  addAdapter(name: string, config: Record<string, unknown>, seed = 0, ctx: InitContext = {}): Adapter {
    this.checkNewName(name);
    const a = Adapter.create(this.llama.backend(), this.config, name, config, seed, ctx);
    this.adapters.set(name, a);
    return a;
  }

  /** Loads a PEFT adapter (any supported method) from a directory or its two files' contents. */
  async loadAdapter(name: string, source: string | AdapterFiles): Promise<Adapter> {
    this.checkNewName(name);
    const a = await Adapter.load(this.llama.backend(), this.config, name, source);
    this.adapters.set(name, a);
    return a;
  }

  /** Adds an adapter built elsewhere (combinations). */
  attach(a: Adapter): Adapter {
    this.checkNewName(a.name);
    this.adapters.set(a.name, a);
    return a;
  }

  deleteAdapter(name: string): void {
    this.adapter(name).release();
    this.adapters.delete(name);
    this.active = this.active.filter((x) => x.name !== name);
  }

  /** Sets the adapters (with weights) that passes use when they name none; [] for the base model. */
  setAdapters(list: readonly { name: string; weight?: number }[]): void {
    const resolved = list.map((x) => ({ name: x.name, weight: x.weight ?? 1 }));
    this.hooksFor(resolved); // validates names and weights
    this.active = resolved;
  }

  get activeAdapters(): readonly { name: string; weight: number }[] {
    return this.active;
  }

  /** The hooks of a pass: the named adapter, a weighted combination, or the active default. */
  hooksFor(selection: AdapterSelection): Hooks<Tensor> {
    const list = selection === undefined ? this.active : typeof selection === "string" ? [{ name: selection, weight: 1 }] : selection;
    if (list.length === 0) return NO_HOOKS;
    const seen = new Set<string>();
    const hooks = list.map((x) => {
      const w = x.weight ?? 1;
      if (!Number.isFinite(w)) throw new PeftError("BAD_PARAMETER", `adapter ${x.name}: weight must be a finite number, got ${x.weight}`);
      if (seen.has(x.name)) throw new PeftError("BAD_PARAMETER", `adapter ${x.name} is listed twice`);
      seen.add(x.name);
      return this.adapter(x.name).hooks(w);
    });
    return stackHooks(hooks);
  }

  /** Base parameters (what PEFT counts as the model's own). */
  baseParameters(): number {
    return this.llama.parameterCount();
  }

  /** PEFT's line: "trainable params: … || all params: … || trainable%: …". */
  trainableParametersLine(name?: string): string {
    const list = name ? [this.adapter(name)] : [...this.adapters.values()];
    const trainable = list.reduce((s, a) => s + a.trainableParameters, 0);
    return formatTrainableParameters(trainable, this.baseParameters() + trainable);
  }

  // ------------------------------------------------------------------ merging

  /**
   * Folds an adapter into the base weights (zero inference overhead); `unmerge` restores the
   * exact originals. Reduced bases: an f16 weight is widened, merged in f32 and rounded back to
   * f16 (as PEFT merges into an f16 model); a quantized weight (4-bit, or a GGUF block format such
   * as Q4_K) becomes the exact f32 sum or, with `requantize`, its own format again (outputs change
   * slightly, as PEFT warns).
   */
  async merge(name: string, o: { requantize?: boolean } = {}): Promise<void> {
    const a = this.adapter(name);
    const rule = a.method.merge;
    if (!rule) throw new PeftError("UNSUPPORTED", `adapter ${name} (${a.method.describe(a.config)}) cannot be merged: ${a.method.cannotMerge ?? "the method has no merge"}`);
    if (o.requantize && !this.llama.quantized.size) throw new PeftError("BAD_PARAMETER", "requantize: the base model is not quantized");
    if (o.requantize) console.warn(`[merge] re-quantizing ${name} merged weights to their base's format: the merged model's outputs differ from base+adapter (rounding), as in PEFT`);
    const be = this.llama.backend();
    const originals = new Map<string, LinearWeight>();
    try {
      for (const w of rule.targets(a.config, this.config)) {
        const cur = this.llama.lw(w);
        const dense = await this.denseCopy(cur);
        const merged = rule.apply(a.config, be, w, dense, a.store(), this.config) as Tensor;
        if (merged !== dense) dense.release();
        originals.set(w, cur);
        this.llama.setLinear(w, await this.storeLike(cur, merged, w, !!o.requantize));
      }
    } catch (e) {
      this.restore(originals);
      throw e;
    }
    this.adapters.delete(name);
    this.active = this.active.filter((x) => x.name !== name);
    this.merged.set(name, { adapter: a, originals });
    this.mergeOrder.push(name);
    this.llama.dropCache();
  }

  /** An f32 copy of a base weight (dequantized or widened), counted as weights. */
  private async denseCopy(cur: LinearWeight): Promise<Tensor> {
    if (isQuantized(cur)) return this.gpu.upload(await cur.dequantize(), cur.shape, "f32", "weights");
    if (cur.dtype === "f16") return toF32(this.gpu, cur, "weights");
    const t = this.gpu.tensor(cur.shape, "f32", "weights");
    this.gpu.copy(cur, t);
    return t;
  }

  /** The merged f32 weight in the dtype of the weight it replaces. */
  private async storeLike(cur: LinearWeight, merged: Tensor, name: string, requantize: boolean): Promise<LinearWeight> {
    merged = this.asWeight(merged);
    if (isQuantized(cur)) {
      if (!requantize) return merged;
      const values = await this.gpu.readF32(merged);
      merged.release();
      return cur.requantize(values, name);
    }
    if (cur.dtype === "f16") {
      const h = toF16(this.gpu, merged, "weights");
      this.gpu.flush();
      merged.release();
      return h;
    }
    return merged;
  }

  /** A tensor counted as base weights (merge results come from the activation pool). */
  private asWeight(t: Tensor): Tensor {
    if (t.category === "weights") return t;
    const w = this.gpu.tensor(t.shape, "f32", "weights");
    this.gpu.copy(t, w);
    this.gpu.flush();
    t.release();
    return w;
  }

  private restore(originals: Map<string, LinearWeight>) {
    this.gpu.flush();
    for (const [w, orig] of originals) {
      const cur = this.llama.lw(w);
      if (cur !== orig) {
        this.llama.setLinear(w, orig);
        cur.release();
      }
    }
  }

  /** Undoes `merge`, restoring the exact original base weights (bit for bit). */
  unmerge(name: string): void {
    const m = this.merged.get(name);
    if (!m) throw new PeftError("UNKNOWN_ADAPTER", `adapter ${name} is not merged`);
    const later = this.mergeOrder.slice(this.mergeOrder.indexOf(name) + 1)
      .filter((n) => [...this.merged.get(n)!.originals.keys()].some((w) => m.originals.has(w)));
    if (later.length) throw new PeftError("MERGE_ORDER", `unmerge ${later.join(", ")} first: merged after ${name} into the same weights`);
    this.restore(m.originals);
    this.merged.delete(name);
    this.mergeOrder.splice(this.mergeOrder.indexOf(name), 1);
    this.adapters.set(name, m.adapter);
    this.llama.dropCache();
  }

  /** PEFT's merge_and_unload: merges for good (the originals and the adapter are freed). */
  async mergeAndUnload(name: string, o: { requantize?: boolean } = {}): Promise<void> {
    await this.merge(name, o);
    const m = this.merged.get(name)!;
    this.gpu.flush();
    for (const q of m.originals.values()) q.release();
    m.adapter.release();
    this.merged.delete(name);
    this.mergeOrder.splice(this.mergeOrder.indexOf(name), 1);
  }

  close(): void {
    for (const a of this.adapters.values()) a.release();
    for (const m of this.merged.values()) m.adapter.release();
    this.adapters.clear();
    this.merged.clear();
  }
}
