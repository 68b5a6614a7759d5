/**
 * Flags every command that loads a model shares (generate, train, serve, merge), and the one
 * place that turns them into loadModel options, so a QLoRA adapter runs on the base it was
 * trained on with the same --quantize/--double-quant/--blocksize/--compute-dtype.
 */
import { loadModel, type LoadModelOptions, type Model } from "../api/model.ts";
import { type Flag, usageError } from "./flags.ts";

const group = "model";

export const MODEL_FLAGS = {
  model: {
    type: "string", required: true, value: "<path.gguf|hf-dir>", group,
    description: "GGUF file, or Hugging Face model directory (config.json, *.safetensors, tokenizer.json)",
  },
  "compute-dtype": {
    type: "string", choices: ["f32", "f16", "auto"], default: "f32", group,
    description: "operand precision of the base model's matmuls; f16 needs the GPU's shader-f16 (else f32, with a warning), auto picks f16 where it exists",
  },
  quantize: {
    type: "string", choices: ["nf4", "fp4"], defaultText: "none", group,
    description: "keep the base's block linears in 4 bits (QLoRA's frozen base), quantized while loading; use the same setting an adapter was trained with",
  },
  "double-quant": { type: "boolean", group, description: "with --quantize: store the 4-bit block scales as 8-bit codes too (bitsandbytes' double quantization)" },
  blocksize: {
    type: "int", defaultText: "64", units: "values per scale", min: 32, max: 4096, group,
    description: "with --quantize: how many weights share one block scale (a power of two)",
  },
  dequantize: {
    type: "boolean", group,
    description: "expand a GGUF's quantized tensors (Q8_0, Q4_K, ...) to f32 at load; by default they stay quantized on the GPU (DoRA and partial fine-tuning need this flag on such a file)",
  },
} as const satisfies Record<string, Flag>;

/** --context-length, for the commands that generate (generate, serve). */
export const CONTEXT_FLAG = {
  "context-length": {
    type: "int", min: 1, defaultText: "the model's", units: "tokens", group,
    description: "cap the context below the model's own (a smaller KV cache)",
  },
} as const satisfies Record<string, Flag>;

export interface ModelFlagValues {
  model: string;
  "compute-dtype": string;
  quantize?: string;
  "double-quant": boolean;
  blocksize?: number;
  dequantize?: boolean;
  "context-length"?: number;
}

/** loadModel options from the model flags (refuses 4-bit options without --quantize). */
export function modelOptions(v: ModelFlagValues): LoadModelOptions {
  if (!v.quantize && (v["double-quant"] || v.blocksize !== undefined)) throw usageError("--double-quant and --blocksize need --quantize nf4|fp4");
  return {
    computeDtype: v["compute-dtype"] as LoadModelOptions["computeDtype"],
    ...(v.quantize ? { quantize: v.quantize as "nf4" | "fp4", doubleQuant: v["double-quant"], blocksize: v.blocksize } : {}),
    ...(v["context-length"] !== undefined ? { contextLength: v["context-length"] } : {}),
    ...(v.dequantize ? { dequantize: true } : {}),
  };
}

export function loadModelFromFlags(v: ModelFlagValues): Promise<Model> {
  return loadModel(v.model, modelOptions(v));
}

/** "on llvmpipe (deno), compute dtype f32, base nf4 + double quant" for the commands' first line. */
export function describeModel(model: Model): string {
  const p = model.parameterReport();
  const q = p.quantization;
  const ggml = Object.keys(p.ggmlTypes);
  return `on ${model.gpu.info.description} (${model.gpu.info.runtime}), compute dtype ${model.computeDtype}` +
    (q ? `, base ${q.type}${q.doubleQuant ? " + double quant" : ""} (blocksize ${q.blocksize})` : "") +
    (ggml.length ? `, GGUF ${ggml.join(" + ")} kept quantized` : "");
}
