/**
 * The user-facing model: weights on the GPU, its tokenizer, its adapters, and generation.
 * `loadModel(path)` accepts a GGUF file or a Hugging Face directory.
 */
import { stat } from "node:fs/promises";
import { PeftError } from "../errors.ts";
import { Gpu, type Tensor } from "../gpu/gpu.ts";
import { type GeneratedPiece, generateTokens, type GenerateOptions, type GenerationResult } from "../infer/generate.ts";
import { Tokenizer } from "../tokenizer/mod.ts";
import { GgufType, type GgufMetaEntry, writeGGUF } from "../io/gguf.ts";
import { f32ToF16Array } from "../io/bytes.ts";
import { matmul } from "../kernels/matmul.ts";
import { uploadQuantized } from "../kernels/nf4_matmul.ts";
import { quantize4bit } from "../quant/mod.ts";
import { type ComputeDtype, dequantizeWeight, isQuantized, type LinearWeight, readWeightF32, resolveQuantizeSpec } from "./quantized.ts";
import { toF16, toF32 } from "../kernels/convert_f16.ts";
import { LoraAdapter, type LoraPair } from "../peft/lora.ts";
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
  /**
   * Quantize the block linear weights (q/k/v/o/gate/up/down) to 4 bits while loading, layer by
   * layer (QLoRA's frozen base). Embeddings and norms stay f32; so does the head unless
   * `quantizeHead`. Default: no quantization.
   */
  quantize?: "nf4" | "fp4";
  /** Values per absmax block (default 64, bitsandbytes' default). */
  blocksize?: number;
  /** Quantize the absmax constants to 8 bits too (bnb compress_statistics); ~0.37 bits/param less. */
  doubleQuant?: boolean;
  /** Also quantize an untied output head (tied heads share the embedding table and stay f32). */
  quantizeHead?: boolean;
  /**
   * Operand precision of the frozen base's matmuls (bitsandbytes' bnb_4bit_compute_dtype).
   * "f32" (default): everything f32. "f16": base linear weights that are not 4-bit are stored as
   * f16 (half the memory) and every base matmul narrows its activations to f16, summing in f32;
   * LoRA weights, their math, gradients and optimizer state stay f32 (an f32 master copy), and
   * training scales the loss dynamically so small gradients survive f16. Needs the adapter's
   * shader-f16 feature: without it "f16" falls back to "f32" with a warning. "auto": f16 where
   * shader-f16 exists, else f32. `model.computeDtype` says what was chosen.
   */
  computeDtype?: "f32" | "f16" | "auto";
}

/**
 * GPU bytes by parameter class (all figures are bytes our allocator holds in GPU buffers):
 * base_4bit = quantized linear weights (codes + block scales + shared tables), base_f16 = f16
 * linear weights (computeDtype "f16"), base_f32 = every other base weight, then the
 * trainer/inference categories of the allocator.
 */
export interface MemoryReport extends ClassBytes, Record<string, number> {
  kv_cache: number;
  other: number;
}

/** GPU bytes of the classes both the memory report and the training planner count. */
export interface ClassBytes {
  base_4bit: number;
  base_f16: number;
  base_f32: number;
  lora: number;
  gradients: number;
  optimizer: number;
  activations: number;
}

/** Parameter counts and bits per parameter of the base weights. */
export interface ParameterReport {
  quantizedParams: number;
  quantizedBytes: number;
  /** Including the shared tables (code maps, nested absmax) of the quantized weights. */
  quantizedBitsPerParam: number;
  f32Params: number;
  f32Bytes: number;
  /** Linear weights stored as f16 (computeDtype "f16"). */
  f16Params: number;
  f16Bytes: number;
  quantization?: { type: string; blocksize: number; doubleQuant: boolean };
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

  /** Operand precision of the base matmuls, as chosen at load (see LoadModelOptions.computeDtype). */
  get computeDtype(): ComputeDtype {
    return this.llama.computeDtype;
  }

  /** True when the base linear weights are 4-bit (a QLoRA base). */
  get isQuantized(): boolean {
    return this.llama.quantized.size > 0;
  }

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
    return this.llama.parameterCount();
  }

  /** PEFT's line: "trainable params: … || all params: … || trainable%: …" (returned and printed). */
  printTrainableParameters(name?: string): string {
    const list = name ? [this.adapter(name)] : [...this.adapters.values()];
    const trainable = list.reduce((s, a) => s + a.trainableParameters, 0);
    const line = formatTrainableParameters(trainable, this.baseParameters() + trainable);
    console.log(line);
    return line;
  }

  /** W += sign·s·B·A for every target of the adapter, on the GPU (an all-f32 base). */
  private applyDelta(a: LoraAdapter, sign: 1 | -1) {
    for (const [w, p] of a.pairs) {
      const W = this.llama.w(w);
      matmul(this.gpu, p.B, p.A, { M: p.target.outFeatures, N: p.target.inFeatures, K: a.config.r, alpha: sign * a.scale, accumulate: true, out: W });
    }
  }

  /** True when some base linear is stored reduced (4-bit or f16): merges then keep the originals. */
  private get hasReducedBase(): boolean {
    return this.isQuantized || [...this.llama.weights.values()].some((t) => t.dtype === "f16");
  }

  /**
   * Merging into a reduced base. 4-bit (QLoRA): each targeted weight is dequantized to f32 on the
   * host (exactly the values the kernels compute with), uploaded, and gets the delta on the GPU;
   * with `requantize` the sum is quantized again with the base's settings (outputs change
   * slightly, as PEFT warns), else it stays f32. f16 (computeDtype "f16"): widened on the GPU, the
   * delta added in f32, narrowed back to f16 (as PEFT merges into an f16 model). The original
   * weights are kept until unmerge / mergeAndUnload, so unmerge restores them exactly.
   */
  private async mergeIntoReduced(a: LoraAdapter, requantize: boolean): Promise<Map<string, LinearWeight>> {
    const originals = new Map<string, LinearWeight>();
    const spec = this.llama.quantSpec;
    if (requantize) {
      console.warn(`[merge] re-quantizing ${a.name} merged weights to ${spec?.type ?? "nf4"}: the merged model's outputs differ from base+adapter (rounding to 4 bits), as in PEFT`);
    }
    const addDelta = (W: Tensor, p: LoraPair) =>
      matmul(this.gpu, p.B, p.A, { M: p.target.outFeatures, N: p.target.inFeatures, K: a.config.r, alpha: a.scale, accumulate: true, out: W });
    for (const [w, p] of a.pairs) {
      const cur = this.llama.lw(w);
      if (isQuantized(cur)) {
        const W = this.gpu.upload(await dequantizeWeight(this.gpu, cur), cur.shape, "f32", "weights");
        addDelta(W, p);
        originals.set(w, cur);
        if (requantize) {
          const merged = await this.gpu.readF32(W);
          W.release();
          const st = quantize4bit(merged, { type: cur.type, blocksize: cur.blocksize, doubleQuant: cur.doubleQuant, name: w, shape: cur.shape });
          this.llama.setLinear(w, uploadQuantized(this.gpu, st, cur.shape, w));
        } else {
          this.llama.setLinear(w, W);
        }
      } else if (cur.dtype === "f16") {
        const W = toF32(this.gpu, cur, "weights");
        addDelta(W, p);
        originals.set(w, cur);
        this.llama.setLinear(w, toF16(this.gpu, W, "weights"));
        this.gpu.flush();
        W.release();
      }
    }
    // Targets that were already f32 (e.g. merged before) take the delta in place.
    for (const [w, p] of a.pairs) {
      if (originals.has(w)) continue;
      const W = this.llama.lw(w);
      if (!isQuantized(W) && W.dtype === "f32") addDelta(W, p);
    }
    return originals;
  }

  /** Reduced (4-bit / f16) originals of weights replaced by merges, per merged adapter. */
  private readonly reducedOriginals = new Map<string, Map<string, LinearWeight>>();

  /**
   * Merges an adapter into the base weights (zero inference overhead); `unmerge` undoes it.
   * On a 4-bit base the targeted weights become f32 (exact sum) or, with `requantize`, 4-bit again.
   */
  async merge(name: string, o: { requantize?: boolean } = {}): Promise<void> {
    await this.exclusive(async () => {
      const a = this.adapter(name);
      if (o.requantize && !this.isQuantized) throw new PeftError("BAD_PARAMETER", "requantize: the base model is not quantized");
      if (this.hasReducedBase) {
        this.reducedOriginals.set(name, await this.mergeIntoReduced(a, o.requantize ?? false));
      } else {
        this.applyDelta(a, 1);
      }
      this.adapters.delete(name);
      this.merged.set(name, a);
      this.llama.dropCache();
    });
  }

  async unmerge(name: string): Promise<void> {
    await this.exclusive(() => {
      const a = this.merged.get(name);
      if (!a) throw new PeftError("UNKNOWN_ADAPTER", `adapter ${name} is not merged`);
      const originals = this.reducedOriginals.get(name);
      if (originals) {
        // Restore the exact 4-bit / f16 weights; the merged copies go.
        this.gpu.flush();
        for (const [w, q] of originals) {
          const merged = this.llama.lw(w);
          this.llama.setLinear(w, q);
          merged.release();
        }
        this.reducedOriginals.delete(name);
        // Weights that were f32 already took the delta in place: take it out again.
        for (const [w, p] of a.pairs) {
          if (originals.has(w)) continue;
          const W = this.llama.lw(w);
          if (!isQuantized(W) && W.dtype === "f32") {
            matmul(this.gpu, p.B, p.A, { M: p.target.outFeatures, N: p.target.inFeatures, K: a.config.r, alpha: -a.scale, accumulate: true, out: W });
          }
        }
      } else {
        this.applyDelta(a, -1);
      }
      this.merged.delete(name);
      this.adapters.set(name, a);
      this.llama.dropCache();
    });
  }

  /**
   * PEFT's merge_and_unload: merges the adapter for good and returns the (now plain) model.
   * On a 4-bit base: `requantize` false keeps the merged weights f32, true re-quantizes them.
   */
  async mergeAndUnload(name: string, o: { requantize?: boolean } = {}): Promise<Model> {
    await this.merge(name, o);
    this.merged.get(name)!.release();
    this.merged.delete(name);
    const originals = this.reducedOriginals.get(name);
    if (originals) {
      this.gpu.flush();
      for (const q of originals.values()) q.release();
      this.reducedOriginals.delete(name);
    }
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
    // GGUF has no bitsandbytes 4-bit type: quantized linears are written dequantized (the exact
    // values the kernels use). Source order is kept.
    for (const name of [...this.llama.weights.keys(), ...this.llama.quantized.keys()]) {
      const w = this.llama.lw(name);
      const data = await readWeightF32(this.gpu, w);
      const shape = [...w.shape];
      tensors.push({ name, shape, data: dtype === "f16" && shape.length === 2 ? f32ToF16Array(data) : data });
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

  /**
   * GPU bytes our allocator holds, by parameter class: base_4bit (quantized linears: codes, block
   * scales, shared tables), base_f16 (f16 linears), base_f32 (other base weights), lora, gradients, optimizer,
   * activations, kv_cache, other. Weights of other models on the same GPU count as "other".
   */
  memoryReport(): MemoryReport {
    const cat = this.gpu.memoryByCategory();
    const p = this.parameterReport();
    const report: MemoryReport = {
      base_4bit: p.quantizedBytes,
      base_f16: p.f16Bytes,
      base_f32: p.f32Bytes,
      lora: cat.lora ?? 0,
      gradients: cat.gradients ?? 0,
      optimizer: cat.optimizer ?? 0,
      activations: cat.activations ?? 0,
      kv_cache: cat.kv_cache ?? 0,
      other: (cat.other ?? 0) + Math.max(0, (cat.weights ?? 0) - p.quantizedBytes - p.f16Bytes - p.f32Bytes),
    };
    return report;
  }

  /** Base parameters per class and what they cost on the GPU (bits per quantized parameter). */
  parameterReport(): ParameterReport {
    let quantizedParams = 0, quantizedBytes = 0, f32Params = 0, f32Bytes = 0;
    const tables = new Set<Tensor>();
    for (const q of this.llama.quantized.values()) {
      quantizedParams += q.shape[0] * q.shape[1];
      quantizedBytes += weightAllocation(q.codes) + weightAllocation(q.absmax);
      tables.add(q.tables);
    }
    for (const t of tables) quantizedBytes += weightAllocation(t);
    let f16Params = 0, f16Bytes = 0;
    for (const t of this.llama.weights.values()) {
      if (t.dtype === "f16") {
        f16Params += t.size;
        f16Bytes += weightAllocation(t);
      } else {
        f32Params += t.size;
        f32Bytes += weightAllocation(t);
      }
    }
    const spec = this.llama.quantSpec;
    return {
      quantizedParams, quantizedBytes, quantizedBitsPerParam: quantizedParams ? (quantizedBytes * 8) / quantizedParams : 0, f32Params, f32Bytes,
      f16Params, f16Bytes,
      quantization: spec ? { type: spec.type, blocksize: spec.blocksize, doubleQuant: spec.doubleQuant } : undefined,
    };
  }

  close(): void {
    for (const a of [...this.adapters.values(), ...this.merged.values()]) a.release();
    this.adapters.clear();
    this.merged.clear();
    this.llama.destroy();
  }
}

/** Bytes the allocator holds for a "weights" tensor (sized exactly, to 16 bytes). */
function weightAllocation(t: Tensor): number {
  return Math.max(16, Math.ceil(t.byteLength / 16) * 16);
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

/** "f16" where shader-f16 exists; an explicit "f16" without it falls back to f32 with a warning. */
function chooseComputeDtype(asked: "f32" | "f16" | "auto", hasF16: boolean): ComputeDtype {
  if (asked === "f32") return "f32";
  if (hasF16) return "f16";
  if (asked === "f16") console.warn("[model] computeDtype \"f16\": this GPU adapter has no shader-f16; computing in f32");
  return "f32";
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
    const quant = resolveQuantizeSpec(o);
    const asked = o.computeDtype ?? "f32";
    if (asked !== "f32" && asked !== "f16" && asked !== "auto") {
      throw new PeftError("BAD_PARAMETER", `computeDtype must be "f32", "f16" or "auto", got ${JSON.stringify(asked)}`);
    }
    const gpu = o.gpu ?? await Gpu.create();
    const computeDtype = chooseComputeDtype(asked, gpu.info.features.f16);
    const llama = await LlamaGpu.load(gpu, source, { quantize: quant, computeDtype });
    return new Model(gpu, llama, tokenizer, path, source.gguf ? new Map(source.gguf.metadata) : undefined);
  } finally {
    await source.close();
  }
}
