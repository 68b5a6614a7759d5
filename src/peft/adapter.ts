/**
 * An adapter attached to a base model, whatever its method: the method, its normalized PEFT
 * config, its parameters on the GPU by PEFT key (f32, q/k rows in GGUF order), and the hooks
 * they drive. Saving and loading go through PEFT directories (HF q/k order on disk); loading
 * checks every key and shape against what the method expects for this model, and refuses files
 * with missing or extra tensors instead of silently dropping them.
 */
import { PeftError } from "../errors.ts";
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import {
  ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, type AdapterFileBytes, type AdapterFiles, type AdapterTensor, encodeAdapterFiles, loadAdapterDir,
  type PeftAdapterConfig, readAdapterFiles, saveAdapterDir,
} from "../io/peft_adapter.ts";
import type { Backend } from "../model/backend.ts";
import { type LlamaConfig, reorderQK } from "../model/config.ts";
import { host, type HostTensor } from "../model/cpu_backend.ts";
import type { Param } from "../model/graph.ts";
import type { Hooks } from "../model/sites.ts";
import { matchKeys } from "./keys.ts";
import type { InitContext, MethodConfig, ParamLayout, ParamStore, PeftMethod } from "./method.ts";
import { methodFor } from "./registry.ts";

/** A trainable tensor and its gradient buffer (the optimizer's view). */
export interface TrainableSlot {
  key: string;
  param: Tensor;
  grad: Tensor;
}

class Store<T> implements ParamStore<T> {
  constructor(readonly map: Map<string, Param<T>>, readonly owner: string) {}
  get(key: string): Param<T> {
    const p = this.map.get(key);
    if (!p) throw new PeftError("ADAPTER_BAD_TENSOR", `adapter ${this.owner} has no parameter ${key}`);
    return p;
  }
}

const sizeOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** GGUF <-> HF order of a parameter's values (q/k head rows of adjacent-pair families, or the layout's own reordering). */
function reorder(l: ParamLayout, data: Float32Array, model: LlamaConfig, direction: "hf_to_gguf" | "gguf_to_hf"): Float32Array {
  if (l.reorder) return l.reorder(data, direction);
  if (!l.qkRows) return data;
  return reorderQK(model, data, l.shape[0], sizeOf(l.shape) / l.shape[0], direction);
}

/** The backend adapters are created and exported on: the GPU one over the base model's weights. */
export type AdapterBackend = Backend<Tensor> & { gpu: Gpu };

export class Adapter {
  readonly params = new Map<string, Param<Tensor>>();
  private hooksCache = new Map<number, Hooks<Tensor>>();

  readonly gpu: Gpu;

  private constructor(
    readonly be: AdapterBackend,
    readonly name: string,
    readonly method: PeftMethod<MethodConfig>,
    readonly config: MethodConfig,
    readonly model: LlamaConfig,
    readonly layout: ParamLayout[],
  ) {
    this.gpu = be.gpu;
  }

  /** A fresh adapter for `model`, initialised as the method's PEFT tuner does, from `seed`. */
  static create(be: AdapterBackend, model: LlamaConfig, name: string, user: Record<string, unknown>, seed = 0, ctx: InitContext = {}): Adapter {
    if (user === null || typeof user !== "object" || Array.isArray(user)) {
      throw new PeftError("ADAPTER_BAD_CONFIG", `adapter ${name}: config must be an object, got ${JSON.stringify(user)}`);
    }
    const method = methodFor(user.peft_type ?? "LORA", `adapter ${name}`);
    const config = method.normalize(user, model);
    const a = new Adapter(be, name, method, config, model, method.layout(config, model));
    const init = method.init(config, model, seed);
    try {
      for (const l of a.layout) a.upload(l, init.get(l.key)!);
      method.initFromBase?.(config, model, be, a.store(), { ...ctx, seed });
    } catch (e) {
      a.release();
      throw e;
    }
    return a;
  }

  /** An adapter with given values (GGUF row order) for every layout key of `config` (combinations). */
  static fromValues(be: AdapterBackend, model: LlamaConfig, name: string, user: Record<string, unknown>, values: Map<string, Float32Array>): Adapter {
    const method = methodFor(user.peft_type ?? "LORA", `adapter ${name}`);
    const config = method.normalize(user, model);
    const a = new Adapter(be, name, method, config, model, method.layout(config, model));
    try {
      for (const l of a.layout) {
        const v = values.get(l.key);
        if (!v) throw new PeftError("ADAPTER_MISSING_TENSORS", `adapter ${name}: no values for ${l.key}`);
        a.upload(l, v);
      }
    } catch (e) {
      a.release();
      throw e;
    }
    return a;
  }

  /**
   * Loads a PEFT adapter for `model` from a directory or from its two files' contents (bytes,
   * Blobs or Files), every tensor checked against the method's layout.
   */
  static async load(be: AdapterBackend, model: LlamaConfig, name: string, source: string | AdapterFiles): Promise<Adapter> {
    const file = typeof source === "string" ? await loadAdapterDir(source) : await readAdapterFiles(source);
    const configPath = file.configName, weightsPath = file.weightsName;
    const method = methodFor(file.config.peft_type, configPath);
    let config: MethodConfig, layout: ParamLayout[];
    try {
      config = method.normalize(file.config as Record<string, unknown>, model);
      layout = method.layout(config, model);
    } catch (e) {
      if (e instanceof PeftError) throw new PeftError("ADAPTER_BAD_CONFIG", `${configPath}: ${e.message}`, { cause: e });
      throw e;
    }
    const tensors = checkTensors(layout, file.tensors, weightsPath, method.peftType);
    const a = new Adapter(be, name, method, config, model, layout);
    try {
      for (const l of layout) a.upload(l, reorder(l, tensors.get(l.key)!.data, model, "hf_to_gguf"));
    } catch (e) {
      a.release();
      throw e;
    }
    return a;
  }

  private upload(l: ParamLayout, data: Float32Array) {
    this.params.set(l.key, { value: this.gpu.upload(data, l.shape, "f32", "lora") });
  }

  store(): ParamStore<Tensor> {
    return new Store(this.params, this.name);
  }

  /** The hooks of this adapter for a forward pass; `weight` scales its effect when combining adapters. */
  hooks(weight = 1): Hooks<Tensor> {
    let h = this.hooksCache.get(weight);
    if (!h) this.hooksCache.set(weight, h = this.method.hooks(this.config, this.model, this.store(), weight));
    return h;
  }

  /**
   * The same hooks over host copies of the parameters (the CPU reference model); with `grads`,
   * each parameter gets a zeroed host gradient buffer there, by PEFT key.
   */
  async hostHooks(weight = 1, grads?: Map<string, Float32Array>): Promise<Hooks<HostTensor>> {
    const map = new Map<string, Param<HostTensor>>();
    for (const l of this.layout) {
      const value = host(l.shape, await this.gpu.readF32(this.params.get(l.key)!.value));
      let grad: HostTensor | undefined;
      if (grads) grads.set(l.key, (grad = host(l.shape)).data);
      map.set(l.key, { value, grad });
    }
    return this.method.hooks(this.config, this.model, new Store(map, this.name), weight);
  }

  get peftType(): string {
    return this.method.peftType;
  }

  /** Trainable parameters (PEFT's count: every element of the adapter's tensors). */
  get trainableParameters(): number {
    return this.layout.reduce((s, l) => s + sizeOf(l.shape), 0);
  }

  /** GPU bytes of the parameters (f32). */
  get bytes(): number {
    return this.trainableParameters * 4;
  }

  /** Parameters with zeroed gradient buffers (allocated on first use), for the optimizer. */
  trainable(): TrainableSlot[] {
    return this.layout.map((l) => {
      const p = this.params.get(l.key)!;
      p.grad ??= this.gpu.zeros(l.shape, "f32", "gradients");
      return { key: l.key, param: p.value, grad: p.grad };
    });
  }

  /**
   * The tensors as PEFT writes them (HF key names and row order) and the config that goes with
   * them: the trained parameters, or with `training` false the method's saved form when it has one
   * (P-tuning's and projected prefix tuning's computed prompts).
   */
  async peftTensors(training = false): Promise<{ config: MethodConfig; tensors: Map<string, AdapterTensor> }> {
    const out = new Map<string, AdapterTensor>();
    const exp = training ? undefined : this.method.export;
    if (exp) {
      const config = exp.config(this.config);
      const values = exp.values(this.config, this.model, this.store(), this.be);
      try {
        for (const l of this.method.layout(config, this.model)) {
          const data = await this.gpu.readF32(values.get(l.key)!);
          out.set(l.key, { shape: l.shape, data: reorder(l, data, this.model, "gguf_to_hf") });
        }
      } finally {
        for (const t of values.values()) t.release();
      }
      return { config, tensors: out };
    }
    for (const l of this.layout) {
      const data = await this.gpu.readF32(this.params.get(l.key)!.value);
      out.set(l.key, { shape: l.shape, data: reorder(l, data, this.model, "gguf_to_hf") });
    }
    return { config: this.config, tensors: out };
  }

  /**
   * Writes the adapter directory (adapter_config.json + weights, atomically). `training` keeps
   * the trained parameters as they are (checkpoints, so training resumes) instead of the saved form.
   */
  async save(dir: string, baseModel: string | null = null, o: { training?: boolean } = {}): Promise<void> {
    const { config, tensors, weightsFile } = await this.savedFiles(baseModel, o.training);
    await saveAdapterDir(dir, config, tensors, weightsFile);
  }

  /** The bytes of adapter_config.json and the weights file, by file name, as `save` would write them. */
  async files(baseModel: string | null = null, o: { training?: boolean } = {}): Promise<AdapterFileBytes> {
    const { config, tensors, weightsFile } = await this.savedFiles(baseModel, o.training);
    return encodeAdapterFiles(config, tensors, `adapter ${this.name}: ${ADAPTER_CONFIG_FILE}`, weightsFile);
  }

  /** The config and tensors a save writes, in the method's directory format (PEFT's, or AdapterHub's), and the weights file's name. */
  private async savedFiles(baseModel: string | null, training = false) {
    const { config: c, tensors } = await this.peftTensors(training);
    const config = {
      ...c, base_model_name_or_path: (c.base_model_name_or_path as string | null) ?? baseModel,
      inference_mode: training ? (c.inference_mode ?? false) : true,
    };
    const fmt = this.method.dir;
    return {
      config: (fmt ? { ...fmt.toJson(config), peft_type: config.peft_type } : config) as PeftAdapterConfig,
      tensors,
      weightsFile: fmt?.weightsFile ?? ADAPTER_WEIGHTS_FILE,
    };
  }

  /** Copies another adapter's parameter values into this one (same method, config and model). */
  copyFrom(other: Adapter): void {
    for (const l of this.layout) {
      const src = other.params.get(l.key);
      if (!src) throw new PeftError("CHECKPOINT_INVALID", `adapter ${other.name} has no parameter ${l.key}`);
      this.gpu.copy(src.value, this.params.get(l.key)!.value);
    }
  }

  /** Frees the GPU buffers. */
  release(): void {
    for (const p of this.params.values()) {
      p.value.release();
      p.grad?.release();
    }
    this.params.clear();
    this.hooksCache.clear();
  }
}

/** Every expected tensor present with its shape and finite values, and nothing else. */
function checkTensors(layout: ParamLayout[], tensors: Map<string, AdapterTensor>, file: string, peftType: string): Map<string, AdapterTensor> {
  const { found, unexpected } = matchKeys(layout.map((l) => l.key), tensors.keys());
  if (unexpected.length) {
    throw new PeftError(
      "ADAPTER_UNEXPECTED_TENSORS",
      `${file}: ${unexpected.length} tensor(s) that this ${peftType} config does not expect (check its target_modules / layers_to_transform / shapes in ${ADAPTER_CONFIG_FILE}): ` +
        unexpected.slice(0, 8).join(", ") + (unexpected.length > 8 ? `, … (${unexpected.length - 8} more)` : ""),
    );
  }
  const missing = layout.filter((l) => !found.has(l.key)).map((l) => l.key);
  if (missing.length) {
    throw new PeftError("ADAPTER_MISSING_TENSORS", `${file}: ${missing.length} tensor(s) the config needs are missing: ${missing.slice(0, 8).join(", ")}${missing.length > 8 ? ", …" : ""}`);
  }
  const out = new Map<string, AdapterTensor>();
  for (const l of layout) {
    const t = tensors.get(found.get(l.key)!)!;
    const want = sizeOf(l.shape);
    // PEFT stores (IA)³ vectors as (out, 1) / (1, in) and magnitudes as (out,): compare sizes and ranks loosely
    // only where a singleton dimension is all that differs.
    const squeeze = (s: number[]) => s.filter((d) => d !== 1);
    const same = t.shape.length === l.shape.length ? t.shape.every((d, i) => d === l.shape[i]) : squeeze(t.shape).join() === squeeze(l.shape).join();
    if (!same || t.data.length !== want) {
      throw new PeftError("ADAPTER_SHAPE_MISMATCH", `${file}: tensor ${found.get(l.key)} has shape [${t.shape}], this model needs [${l.shape}]`);
    }
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i])) throw new PeftError("ADAPTER_BAD_TENSOR", `${file}: tensor ${found.get(l.key)} has a non-finite value (${t.data[i]}) at index ${i}`);
    }
    out.set(l.key, t);
  }
  return out;
}
