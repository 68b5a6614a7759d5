/**
 * The user-facing model: weights on the GPU, its tokenizer, its adapters, and generation.
 * `loadModel(path)` accepts a GGUF file or a Hugging Face directory; `loadModel(bytes | Blob | File)`
 * a GGUF file's contents (a web page's picked file, read by slices as tensors are needed).
 */
import { stat } from "../util/host.ts";
import { PeftError } from "../errors.ts";
import { Gpu } from "../gpu/gpu.ts";
import { type GeneratedPiece, generateTokens, type GenerateOptions, type GenerationResult } from "../infer/generate.ts";
import { Tokenizer } from "../tokenizer/mod.ts";
import type { GgufMetaEntry } from "../io/gguf.ts";
import type { GgufExportType } from "../io/gguf_export_types.ts";
import { type ByteInput, inputName } from "../io/bytes.ts";
import type { AdapterFileBytes, AdapterFiles } from "../io/peft_adapter.ts";
import { type ComputeDtype, resolveQuantizeSpec } from "../model/quantized.ts";
import { type GgufSaveReport, type HfSaveReport, saveAdapterGguf, saveGguf, saveHf } from "./export.ts";
import type { Adapter } from "../peft/adapter.ts";
import { addWeightedAdapter, type CombinationType } from "../peft/combine.ts";
import { type AdapterSelection, PeftModel } from "../peft/peft_model.ts";
import type { LlamaConfig } from "../model/config.ts";
import { LlamaGpu } from "../model/llama.ts";
import { type MemoryReport, memoryReport, type ParameterReport, parameterReport } from "../model/memory_report.ts";
import { ggufWeights, type WeightSource } from "../model/weights.ts";

export type { ClassBytes, MemoryReport, ParameterReport } from "../model/memory_report.ts";
export type { GgufSaveReport, HfSaveReport } from "./export.ts";

export interface LoadModelOptions {
  /**
   * The model's name when it is given as bytes or a Blob: messages and saved adapters'
   * base_model_name_or_path use it (default: a File's own name, else "<memory>").
   */
  name?: string;
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
   * A GGUF's block-quantized tensors (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, BF16) stay in
   * their own format on the GPU by default: linears, the embedding table and the head are
   * dequantized on the fly by the kernels, and LoRA trains on them as QLoRA trains on NF4.
   * `dequantize: true` expands them to f32 at load instead (4–8x the GPU memory; what DoRA and
   * partial fine-tuning of linears need). With `quantize`, the block linears are re-quantized to
   * NF4/FP4 from their dequantized values either way.
   */
  dequantize?: boolean;
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
  /** The base model with its adapters (any PEFT method), merging and combining. */
  readonly peft: PeftModel;

  constructor(
    readonly gpu: Gpu,
    readonly llama: LlamaGpu,
    readonly tokenizer: Tokenizer,
    readonly source: string,
    /** GGUF metadata of the source file (tokenizer, architecture), carried into exports. */
    readonly ggufMetadata?: Map<string, GgufMetaEntry>,
  ) {
    this.peft = new PeftModel(llama);
  }

  /** Operand precision of the base matmuls, as chosen at load (see LoadModelOptions.computeDtype). */
  get computeDtype(): ComputeDtype {
    return this.llama.computeDtype;
  }

  /** True when base weights are kept quantized: 4-bit (a QLoRA base) or a GGUF's block formats. */
  get isQuantized(): boolean {
    return this.llama.quantized.size > 0;
  }

  get config(): LlamaConfig {
    return this.llama.config;
  }

  /** Adapters by name (unmerged: applied per request in the forward pass). */
  get adapters(): Map<string, Adapter> {
    return this.peft.adapters;
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

  adapter(name: string): Adapter {
    return this.peft.adapter(name);
  }

  /**
   * Adds a fresh adapter with PEFT's config keys: peft_type "LORA" (default; use_dora for DoRA),
   * "IA3", "LN_TUNING", "BITFIT" or "PARTIAL", and the method's keys (r, lora_alpha, target_modules, ...).
   */
  addAdapter(name: string, config: Record<string, unknown>, seed = 0): Adapter {
    return this.peft.addAdapter(name, config, seed, { tokenize: (text) => this.tokenizer.encode(text, { addSpecial: true, parseSpecial: false }) });
  }

  /**
   * Loads an HF PEFT adapter (adapter_config.json + adapter_model.safetensors), any supported
   * method: a directory path, or the two files' contents (bytes, Blobs or Files) under those names.
   */
  async loadAdapter(name: string, source: string | AdapterFiles): Promise<Adapter> {
    return await this.peft.loadAdapter(name, source);
  }

  /**
   * Saves an adapter in HF PEFT format: into directory `dir` (atomically), or, without `dir`,
   * returns the two files' bytes (a web page offers them as downloads; loadAdapter takes them back).
   */
  async saveAdapter(name: string, dir: string): Promise<void>;
  async saveAdapter(name: string): Promise<AdapterFileBytes>;
  async saveAdapter(name: string, dir?: string): Promise<void | AdapterFileBytes> {
    if (dir === undefined) return await this.adapter(name).files(this.source);
    await this.adapter(name).save(dir, this.source);
  }

  deleteAdapter(name: string): void {
    this.peft.deleteAdapter(name);
  }

  /** The adapters (with weights) that generation and logits use when a call names none; [] for the base. */
  setAdapters(list: readonly { name: string; weight?: number }[]): void {
    this.peft.setAdapters(list);
  }

  /**
   * PEFT's add_weighted_adapter for LoRA adapters: a new adapter `name` combining `adapters` with
   * `weights` ("cat": exact, rank Σr; "linear": PEFT's √-weighted sum of A and B; "svd": truncated
   * SVD of the weighted delta at `svdRank`, default the largest rank).
   */
  async addWeightedAdapter(adapters: string[], weights: number[], name: string, o: { combinationType?: CombinationType; svdRank?: number } = {}): Promise<Adapter> {
    return await this.exclusive(() => addWeightedAdapter(this.peft, adapters, weights, name, o));
  }

  /** Base parameters (what PEFT counts as the model's own). */
  baseParameters(): number {
    return this.peft.baseParameters();
  }

  /** PEFT's line: "trainable params: … || all params: … || trainable%: …" (returned and printed). */
  printTrainableParameters(name?: string): string {
    const line = this.peft.trainableParametersLine(name);
    console.log(line);
    return line;
  }

  /**
   * Merges an adapter into the base weights (zero inference overhead); `unmerge` restores the
   * exact originals. On a quantized base (4-bit, or a GGUF block format) the targeted weights
   * become f32 (exact sum) or, with `requantize`, their own format again.
   */
  async merge(name: string, o: { requantize?: boolean } = {}): Promise<void> {
    await this.exclusive(() => this.peft.merge(name, o));
  }

  async unmerge(name: string): Promise<void> {
    await this.exclusive(() => this.peft.unmerge(name));
  }

  /** PEFT's merge_and_unload: merges the adapter for good and returns the (now plain) model. */
  async mergeAndUnload(name: string, o: { requantize?: boolean } = {}): Promise<Model> {
    await this.exclusive(() => this.peft.mergeAndUnload(name, o));
    return this;
  }

  /**
   * Saves the model's current weights (merged adapters included) as GGUF, keeping the source's
   * metadata: "f32" (default), "f16", "q8_0" or "q4_k" for the matrices (ggml's block formats, our
   * port of its reference quantizers); norms stay f32, as llama.cpp's converter writes them.
   * A matrix whose rows are not whole blocks falls back as llama.cpp's tools do (q8_0 -> f16,
   * q4_k -> q5_0 -> f16); the report lists them.
   */
  async save(path: string, o: { dtype?: GgufExportType } = {}): Promise<GgufSaveReport> {
    return await this.exclusive(() => saveGguf(this, path, o.dtype));
  }

  /**
   * Saves the model's current weights as a Hugging Face directory (config.json, F32
   * model.safetensors, and the source directory's tokenizer files when it has them).
   */
  async saveHf(dir: string): Promise<HfSaveReport> {
    return await this.exclusive(() => saveHf(this, dir));
  }

  /**
   * Saves a LoRA adapter as a GGUF that llama.cpp applies at runtime (llama-cli -m base.gguf --lora x.gguf);
   * without a path, returns the file's bytes (a browser download).
   */
  async saveAdapterGguf(name: string): Promise<Uint8Array>;
  async saveAdapterGguf(name: string, path: string): Promise<void>;
  async saveAdapterGguf(name: string, path?: string): Promise<Uint8Array | void> {
    return await this.exclusive(() => saveAdapterGguf(this, name, path));
  }

  /** Prompt text -> ids the way generation tokenizes it. */
  encodePrompt(prompt: string, o: GenerateOptions = {}): number[] {
    return this.tokenizer.encode(prompt, { addSpecial: o.addBos ?? true, parseSpecial: o.parseSpecial ?? false });
  }

  /** The adapters of a call: `adapters` (weighted), else `adapter`, else the active default. */
  private selection(o: { adapter?: string; adapters?: readonly { name: string; weight?: number }[] }): AdapterSelection {
    if (o.adapter !== undefined && o.adapters !== undefined) throw new PeftError("BAD_PARAMETER", "give either adapter or adapters, not both");
    return o.adapters ?? o.adapter;
  }

  /**
   * Streams generated token pieces for a prompt (text or ids) and returns a summary.
   * Concurrent calls queue: each holds the model's KV cache while it runs.
   */
  async *generateStream(prompt: string | number[], o: GenerateOptions = {}): AsyncGenerator<GeneratedPiece, GenerationResult> {
    const ids = typeof prompt === "string" ? this.encodePrompt(prompt, o) : prompt;
    const release = await this.mutex.lock();
    try {
      const hooks = this.peft.hooksFor(this.selection(o));
      return yield* generateTokens(this.llama, this.tokenizer, ids, o, hooks);
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
  async logits(ids: number[], o: { adapter?: string; adapters?: readonly { name: string; weight?: number }[] } = {}): Promise<Float32Array[]> {
    const release = await this.mutex.lock();
    try {
      const hooks = this.peft.hooksFor(this.selection(o));
      const t = this.llama.forward(ids, 0, { hooks, allLogits: true });
      const flat = await this.gpu.readF32(t);
      t.release();
      const V = this.config.vocabSize;
      return Array.from({ length: ids.length }, (_, i) => flat.slice(i * V, (i + 1) * V));
    } finally {
      release();
    }
  }

  /**
   * GPU bytes our allocator holds, by parameter class: base_4bit (NF4/FP4 linears: codes, block
   * scales, shared tables), base_ggml (GGUF tensors kept in their block format), base_f16 (f16 linears), base_f32 (other base weights), lora (adapter
   * parameters, any method), gradients, optimizer, activations, kv_cache, other.
   */
  memoryReport(): MemoryReport {
    return memoryReport(this.llama);
  }

  /** Base parameters per class and what they cost on the GPU (bits per quantized parameter). */
  parameterReport(): ParameterReport {
    return parameterReport(this.llama);
  }

  close(): void {
    this.peft.close();
    this.llama.destroy();
  }
}

/**
 * Opens a GGUF file or a Hugging Face model directory (paths), or a GGUF file's contents (bytes,
 * Blob or File, named `name` in messages), as a WeightSource.
 */
export async function openWeights(input: ByteInput, name?: string): Promise<WeightSource> {
  if (typeof input !== "string") return await ggufWeights(input, name ?? inputName(input, "<memory>"));
  const path = input;
  let info;
  try {
    info = await stat(path);
  } catch {
    throw new PeftError("FILE_NOT_FOUND", `model not found: ${path}`);
  }
  if (info.isDirectory()) {
    const { hfWeights } = await import("../model/hf_weights.ts");
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

export async function loadModel(input: ByteInput, o: LoadModelOptions = {}): Promise<Model> {
  const source = await openWeights(input, o.name);
  const path = source.name;
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
    const llama = await LlamaGpu.load(gpu, source, { quantize: quant, computeDtype, dequantize: o.dequantize });
    return new Model(gpu, llama, tokenizer, path, source.gguf ? new Map(source.gguf.metadata) : undefined);
  } finally {
    await source.close();
  }
}
