/**
 * The user-facing model: weights on the GPU, its tokenizer, its adapters, and generation.
 * `loadModel(path)` accepts a GGUF file or a Hugging Face directory.
 */
import { stat } from "node:fs/promises";
import { PeftError } from "../errors.ts";
import { Gpu } from "../gpu/gpu.ts";
import { type GeneratedPiece, generateTokens, type GenerateOptions, type GenerationResult } from "../infer/generate.ts";
import { Tokenizer } from "../tokenizer/mod.ts";
import { GgufType, type GgufMetaEntry, writeGGUF } from "../io/gguf.ts";
import { f32ToF16 } from "../io/bytes.ts";
import { matmul } from "../kernels/matmul.ts";
import { LoraAdapter } from "../peft/lora.ts";
import { formatTrainableParameters } from "../peft/targets.ts";
import type { LlamaConfig } from "./config.ts";
import { LlamaGpu } from "./llama.ts";
import type { ActiveAdapter } from "./linear.ts";
import { ggufWeights, type WeightSource } from "./weights.ts";

export interface LoadModelOptions {
  /** Reuse a GPU device (several models, or tests). */
  gpu?: Gpu;
  /** Cap the context length below the model's own (saves KV-cache memory). */
  contextLength?: number;
}

/** A simple FIFO lock: one generation (one KV cache) at a time per model. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async lock(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((r) => release = r);
    const prev = this.tail;
    this.tail = prev.then(() => next);
    await prev;
    return release;
  }
}

export class Model {
  private readonly mutex = new Mutex();
  /** LoRA adapters by name (unmerged: applied per request in the forward pass). */
  readonly adapters = new Map<string, LoraAdapter>();
  /** Adapters merged into the base weights, with their scale, so `unmerge` can undo them. */
  private readonly merged = new Map<string, LoraAdapter>();

  constructor(
    readonly gpu: Gpu,
    readonly llama: LlamaGpu,
    readonly tokenizer: Tokenizer,
    readonly source: string,
    /** GGUF metadata of the source file (tokenizer, architecture), carried into exports. */
    readonly ggufMetadata?: Map<string, GgufMetaEntry>,
  ) {}

  get config(): LlamaConfig {
    return this.llama.config;
  }

  /** Runs `fn` while holding the model exclusively (training and generation share the GPU state). */
  async exclusive<T>(fn: () => Promise<T> | T): Promise<T> {
    const release = await this.mutex.lock();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  adapter(name: string): LoraAdapter {
    const a = this.adapters.get(name);
    if (!a) throw new PeftError("UNKNOWN_ADAPTER", `no adapter named ${name} (loaded: ${[...this.adapters.keys()].join(", ") || "none"})`);
    return a;
  }

  protected adapterFor(name?: string): ActiveAdapter | undefined {
    return name === undefined ? undefined : this.adapter(name).active();
  }

  private checkNewName(name: string) {
    if (typeof name !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
      throw new PeftError("BAD_ADAPTER_NAME", `adapter name ${JSON.stringify(name)} must be 1-64 characters of A-Z a-z 0-9 _ . -`);
    }
    if (this.adapters.has(name) || this.merged.has(name)) throw new PeftError("ADAPTER_EXISTS", `an adapter named ${name} already exists`);
  }

  /** Adds a fresh LoRA adapter (PEFT LoraConfig keys: r, lora_alpha, target_modules, ...). */
  addAdapter(name: string, config: Record<string, unknown>, seed = 0): LoraAdapter {
    this.checkNewName(name);
    const a = LoraAdapter.create(this.gpu, this.config, name, config, seed);
    this.adapters.set(name, a);
    return a;
  }

  /** Loads an HF PEFT adapter directory (adapter_config.json + adapter_model.safetensors). */
  async loadAdapter(name: string, dir: string): Promise<LoraAdapter> {
    this.checkNewName(name);
    const a = await LoraAdapter.load(this.gpu, this.config, name, dir);
    this.adapters.set(name, a);
    return a;
  }

  /** Saves an adapter in HF PEFT format, atomically. */
  async saveAdapter(name: string, dir: string): Promise<void> {
    await this.adapter(name).save(dir, this.source);
  }

  deleteAdapter(name: string): void {
    this.adapter(name).release();
    this.adapters.delete(name);
  }

  /** Base parameters (what PEFT counts as the model's own). */
  baseParameters(): number {
    let n = 0;
    for (const t of this.llama.weights.values()) n += t.size;
    return n;
  }

  /** PEFT's line: "trainable params: … || all params: … || trainable%: …" (returned and printed). */
  printTrainableParameters(name?: string): string {
    const list = name ? [this.adapter(name)] : [...this.adapters.values()];
    const trainable = list.reduce((s, a) => s + a.trainableParameters, 0);
    const line = formatTrainableParameters(trainable, this.baseParameters() + trainable);
    console.log(line);
    return line;
  }

  /** W += sign·s·B·A for every target of the adapter, on the GPU. */
  private applyDelta(a: LoraAdapter, sign: 1 | -1) {
    for (const [w, p] of a.pairs) {
      const W = this.llama.w(w);
      matmul(this.gpu, p.B, p.A, { M: p.target.outFeatures, N: p.target.inFeatures, K: a.config.r, alpha: sign * a.scale, accumulate: true, out: W });
    }
  }

  /** Merges an adapter into the base weights (zero inference overhead); `unmerge` undoes it. */
  async merge(name: string): Promise<void> {
    await this.exclusive(() => {
      const a = this.adapter(name);
      this.applyDelta(a, 1);
      this.adapters.delete(name);
      this.merged.set(name, a);
      this.llama.dropCache();
    });
  }

  async unmerge(name: string): Promise<void> {
    await this.exclusive(() => {
      const a = this.merged.get(name);
      if (!a) throw new PeftError("UNKNOWN_ADAPTER", `adapter ${name} is not merged`);
      this.applyDelta(a, -1);
      this.merged.delete(name);
      this.adapters.set(name, a);
      this.llama.dropCache();
    });
  }

  /** PEFT's merge_and_unload: merges the adapter for good and returns the (now plain) model. */
  async mergeAndUnload(name: string): Promise<Model> {
    await this.merge(name);
    this.merged.get(name)!.release();
    this.merged.delete(name);
    return this;
  }

  /**
   * Saves the model's current weights (merged adapters included) as GGUF (F32 or F16 for the
   * 2-D weights, norms stay F32, as llama.cpp's converter does), keeping the source's metadata.
   */
  async save(path: string, o: { dtype?: "f32" | "f16" } = {}): Promise<void> {
    const dtype = o.dtype ?? "f32";
    if (dtype !== "f32" && dtype !== "f16") throw new PeftError("BAD_PARAMETER", `dtype must be "f32" or "f16", got ${dtype}`);
    if (!this.ggufMetadata) {
      throw new PeftError("UNSUPPORTED", `${this.source}: saving as GGUF needs GGUF metadata; this model came from a Hugging Face directory`);
    }
    const tensors = [];
    for (const [name, t] of this.llama.weights) {
      const data = await this.gpu.readF32(t);
      tensors.push({ name, shape: t.shape, data: dtype === "f16" && t.shape.length === 2 ? Uint16Array.from(data, f32ToF16) : data });
    }
    const metadata = new Map(this.ggufMetadata);
    metadata.set("general.file_type", { type: GgufType.UINT32, value: dtype === "f16" ? 1 : 0 });
    await writeGGUF(path, { metadata, tensors });
  }

  /** Prompt text -> ids the way generation tokenizes it. */
  encodePrompt(prompt: string, o: GenerateOptions = {}): number[] {
    return this.tokenizer.encode(prompt, { addSpecial: o.addBos ?? true, parseSpecial: o.parseSpecial ?? false });
  }

  /**
   * Streams generated token pieces for a prompt (text or ids) and returns a summary.
   * Concurrent calls queue: each holds the model's KV cache while it runs.
   */
  async *generateStream(prompt: string | number[], o: GenerateOptions = {}): AsyncGenerator<GeneratedPiece, GenerationResult> {
    const adapter = this.adapterFor(o.adapter);
    const ids = typeof prompt === "string" ? this.encodePrompt(prompt, o) : prompt;
    const release = await this.mutex.lock();
    try {
      return yield* generateTokens(this.llama, this.tokenizer, ids, o, adapter);
    } finally {
      release();
    }
  }

  /** Streams generated text. */
  async *generate(prompt: string | number[], o: GenerateOptions = {}): AsyncGenerator<string> {
    for await (const piece of this.generateStream(prompt, o)) if (piece.text) yield piece.text;
  }

  /** Generates and returns the whole completion text. */
  async complete(prompt: string | number[], o: GenerateOptions = {}): Promise<string> {
    let s = "";
    for await (const t of this.generate(prompt, o)) s += t;
    return s;
  }

  /** Logits [T, V] for `ids` from position 0 (a fresh sequence), as host arrays. */
  async logits(ids: number[], o: { adapter?: string } = {}): Promise<Float32Array[]> {
    const adapter = this.adapterFor(o.adapter);
    const release = await this.mutex.lock();
    try {
      const t = this.llama.forward(ids, 0, { adapter, allLogits: true });
      const flat = await this.gpu.readF32(t);
      t.release();
      const V = this.config.vocabSize;
      return Array.from({ length: ids.length }, (_, i) => flat.slice(i * V, (i + 1) * V));
    } finally {
      release();
    }
  }

  /** GPU bytes our allocator holds, by category. */
  memoryReport(): Record<string, number> {
    return this.gpu.memoryByCategory();
  }

  close(): void {
    for (const a of [...this.adapters.values(), ...this.merged.values()]) a.release();
    this.adapters.clear();
    this.merged.clear();
    this.llama.destroy();
  }
}

/** Opens a GGUF file or a Hugging Face model directory as a WeightSource. */
export async function openWeights(path: string): Promise<WeightSource> {
  let info;
  try {
    info = await stat(path);
  } catch {
    throw new PeftError("FILE_NOT_FOUND", `model not found: ${path}`);
  }
  if (info.isDirectory()) {
    const { hfWeights } = await import("./hf_weights.ts");
    return await hfWeights(path);
  }
  return await ggufWeights(path);
}

export async function loadModel(path: string, o: LoadModelOptions = {}): Promise<Model> {
  const source = await openWeights(path);
  try {
    if (o.contextLength !== undefined) {
      if (!Number.isInteger(o.contextLength) || o.contextLength < 1) {
        throw new PeftError("BAD_PARAMETER", `contextLength must be a positive integer, got ${o.contextLength}`);
      }
      source.config.contextLength = Math.min(source.config.contextLength, o.contextLength);
    }
    const tokenizer = source.gguf
      ? Tokenizer.fromGGUF(source.gguf)
      : source.tokenizerJsonPath
      ? await Tokenizer.fromFile(source.tokenizerJsonPath)
      : (() => {
        throw new PeftError("TOKENIZER_MISSING", `${path}: no tokenizer (GGUF tokenizer metadata or tokenizer.json) found`);
      })();
    if (tokenizer.vocabSize > source.config.vocabSize) {
      throw new PeftError("TOKENIZER_MISMATCH", `${path}: tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${source.config.vocabSize}`);
    }
    const gpu = o.gpu ?? await Gpu.create();
    const llama = await LlamaGpu.load(gpu, source);
    return new Model(gpu, llama, tokenizer, path, source.gguf ? new Map(source.gguf.metadata) : undefined);
  } finally {
    await source.close();
  }
}
