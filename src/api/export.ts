/**
 * Exports of a Model (the bodies of Model.save / saveHf / saveAdapterGguf):
 *  - the current weights (merged adapters included) as a GGUF that llama.cpp loads, in f32, f16,
 *    q8_0 or q4_k (io/gguf_export_types.ts says which ggml type each tensor gets, and when a
 *    tensor falls back to another as llama.cpp's tools do), keeping the source's metadata;
 *  - the same weights as a Hugging Face directory (config.json + model.safetensors, the source
 *    directory's tokenizer files copied when it has them);
 *  - a LoRA adapter as llama.cpp's runtime LoRA GGUF (peft/lora/gguf.ts).
 * Reads one base tensor at a time from the GPU; the file is assembled in memory, which suits the
 * small and mid-size models this runtime trains.
 */
import { join, readFile, stat } from "../util/host.ts";
import { PeftError } from "../errors.ts";
import { writeFileAtomic } from "../io/bytes.ts";
import { encodeExportTensor, type GgufExportType, GGUF_EXPORT_TYPES, isGgufExportType, LLAMA_FILE_TYPE } from "../io/gguf_export_types.ts";
import { GgufType, writeGGUF } from "../io/gguf.ts";
import { encodeLoraGguf, writeLoraGguf } from "../io/gguf_lora.ts";
import { GGML_TYPES } from "../io/ggml_quants.ts";
import { writeHfDirectory } from "../model/hf_weights.ts";
import { readWeightF32 } from "../model/quantized.ts";
import type { WeightSource } from "../model/weights.ts";
import { family } from "../model/families/family.ts";
import { ROPE_FREQS } from "../model/validate_weights.ts";
import { loraGguf } from "../peft/lora/gguf.ts";
import type { Model } from "./model.ts";

export interface GgufSaveReport {
  /** Tensors per ggml type written, e.g. { Q5_0: 7, F16: 2, F32: 5 }. */
  types: Record<string, number>;
  /** Tensors that could not take the asked type: why, and what they got (llama.cpp's fallback rule). */
  fallbacks: { tensor: string; note: string }[];
}

/**
 * Names of the model's current base tensors, in the source's order (4-bit linears last). GGUF has
 * no bitsandbytes 4-bit type: those are exported dequantized, the exact values the kernels use.
 */
function tensorNames(model: Model): string[] {
  return [...model.llama.weights.keys(), ...model.llama.quantized.keys()];
}

async function readTensor(model: Model, name: string): Promise<{ shape: number[]; data: Float32Array }> {
  const w = model.llama.lw(name);
  return { shape: [...w.shape], data: await readWeightF32(model.gpu, w) };
}

/** Model.save: the current weights as GGUF of `dtype`, with the source GGUF's metadata. */
export async function saveGguf(model: Model, path: string, dtype: GgufExportType = "f32"): Promise<GgufSaveReport> {
  if (!isGgufExportType(dtype)) throw new PeftError("BAD_PARAMETER", `dtype must be one of ${GGUF_EXPORT_TYPES.join(", ")}, got ${JSON.stringify(dtype)}`);
  if (!model.ggufMetadata) {
    throw new PeftError("UNSUPPORTED", `${model.source}: saving as GGUF needs GGUF metadata (tokenizer, hyper-parameters); this model came from a Hugging Face directory: save it with saveHf`);
  }
  const report: GgufSaveReport = { types: {}, fallbacks: [] };
  const tensors = [];
  for (const name of tensorNames(model)) {
    const { shape, data } = await readTensor(model, name);
    const t = encodeExportTensor(name, shape, data, dtype);
    const type = GGML_TYPES.get(t.ggmlType)!.name;
    report.types[type] = (report.types[type] ?? 0) + 1;
    if (t.fallback) report.fallbacks.push({ tensor: name, note: t.fallback });
    tensors.push(t);
  }
  // Llama 3's rope factors live in the config, not on the GPU: written back as the source had them (F32, 1-D).
  const factors = model.config.ropeFreqFactors;
  if (factors) {
    tensors.push(encodeExportTensor(ROPE_FREQS, [factors.length], factors, dtype));
    report.types.F32 = (report.types.F32 ?? 0) + 1;
  }
  const metadata = new Map(model.ggufMetadata);
  metadata.set("general.file_type", { type: GgufType.UINT32, value: LLAMA_FILE_TYPE[dtype] });
  await writeGGUF(path, { metadata, tensors });
  return report;
}

/** Tokenizer (and generation) files an HF model directory may hold beside tokenizer.json. */
const HF_SIDE_FILES = ["tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "added_tokens.json", "generation_config.json"];

async function isDirectory(path: string): Promise<boolean> {
  return await stat(path).then((s) => s.isDirectory(), () => false);
}

export interface HfSaveReport {
  /** Tokenizer files copied from the source directory (none for a GGUF source). */
  tokenizerFiles: string[];
}

/** Model.saveHf: the current weights as an HF directory (F32 safetensors, q/k rows in HF order). */
export async function saveHf(model: Model, dir: string): Promise<HfSaveReport> {
  const sourceDir = (await isDirectory(model.source)) ? model.source : undefined;
  const tokenizerJson = sourceDir ? join(sourceDir, "tokenizer.json") : undefined;
  const hasTokenizerJson = tokenizerJson !== undefined && await stat(tokenizerJson).then(() => true, () => false);
  const view: WeightSource = {
    name: model.source,
    config: model.config,
    names: () => tensorNames(model),
    shape: (name) => [...model.llama.lw(name).shape],
    readF32: async (name) => (await readTensor(model, name)).data,
    ...(hasTokenizerJson ? { tokenizerJsonPath: tokenizerJson } : {}),
    close: async () => {},
  };
  await writeHfDirectory(dir, view);
  const tokenizerFiles = hasTokenizerJson ? ["tokenizer.json"] : [];
  if (sourceDir) {
    for (const f of HF_SIDE_FILES) {
      const bytes = await readFile(join(sourceDir, f)).catch(() => undefined);
      if (!bytes) continue;
      await writeFileAtomic(join(dir, f), new Uint8Array(bytes));
      tokenizerFiles.push(f);
    }
  }
  return { tokenizerFiles };
}

/** Model.saveAdapterGguf: adapter `name` as a llama.cpp runtime LoRA GGUF at `path`, or its bytes. */
export async function saveAdapterGguf(model: Model, name: string, path?: string): Promise<Uint8Array | undefined> {
  const architecture = (model.ggufMetadata?.get("general.architecture")?.value as string | undefined) ?? family(model.config).llamaCppArchitecture;
  const lora = await loraGguf(model.adapter(name), architecture);
  if (path === undefined) return encodeLoraGguf(lora, `adapter ${name}`);
  await writeLoraGguf(path, lora);
}
