/**
 * edge-peft for web pages and workers: the whole library but the server and the CLI, with no
 * node: import on its path (scripts/bundle.mjs builds it into dist/edge-peft.browser.js with
 * src/util/host.browser.ts in place of host.ts). Files come in as bytes, Blobs or Files
 * (`loadModel(file)`, `model.loadAdapter(name, files)`) and go out as bytes
 * (`model.saveAdapter(name)`). mod.ts re-exports all of it, plus what needs a file system.
 * Re-exports only.
 */
export { PeftError } from "./src/errors.ts";
export { Gpu, Tensor } from "./src/gpu/gpu.ts";
export { BROWSER_WEBGPU_HINT, detectRuntime } from "./src/gpu/device.ts";
export type { DeviceInfo, Runtime } from "./src/gpu/device.ts";

// files (bytes, Blobs and Files in; bytes out)
export type { ByteInput } from "./src/io/bytes.ts";
export { encodeGGUF, readGGUF } from "./src/io/gguf.ts";
export type { GgufFile } from "./src/io/gguf.ts";
export { encodeSafetensors, readSafetensors } from "./src/io/safetensors.ts";
export { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, encodeAdapterFiles, readAdapterFiles } from "./src/io/peft_adapter.ts";
export type { AdapterFileBytes, AdapterFiles, PeftAdapterConfig } from "./src/io/peft_adapter.ts";
export { GGUF_EXPORT_TYPES, type GgufExportType, tensorStorage } from "./src/io/gguf_export_types.ts";

// models
export { loadModel, Model, openWeights } from "./src/api/model.ts";
export type { GgufSaveReport, HfSaveReport, LoadModelOptions, MemoryReport, ParameterReport } from "./src/api/model.ts";
export { dequantizeWeight, isQuantized, type LinearWeight, type QuantizedLinear, type QuantizeSpec } from "./src/model/quantized.ts";
export { readQuantState } from "./src/model/quantized_4bit.ts";
export { checkTrainingPlan, formatPlan, planTraining, type TrainingPlan, type TrainingPlanOptions } from "./src/train/memory_plan.ts";
export type { LlamaConfig } from "./src/model/config.ts";
export { ggufWeights } from "./src/model/weights.ts";

// PEFT and training
export { Adapter } from "./src/peft/adapter.ts";
export { type AdapterSelection, PeftModel } from "./src/peft/peft_model.ts";
export { methodFor, SUPPORTED_PEFT_TYPES } from "./src/peft/registry.ts";
export type { MethodConfig, PeftMethod } from "./src/peft/method.ts";
export { loraScale, normalizeLoraConfig } from "./src/peft/lora/config.ts";
export type { LoraConfig } from "./src/peft/lora/config.ts";
export { train } from "./src/train/trainer.ts";
export type { StepRecord, Strategy, TrainOptions, TrainResult } from "./src/train/trainer.ts";
export { distill } from "./src/train/distill.ts";
export type { DistillOptions, TeacherModel, TeacherSpec } from "./src/train/distill.ts";
export { evaluate, evaluateExamples, loadEvalExamples } from "./src/train/evaluate.ts";
export type { EvalResult, EvalSetOptions } from "./src/train/evaluate.ts";
export type { TrainingObjective } from "./src/train/objective.ts";
export { loadDataset, type TrainingText } from "./src/train/data.ts";
export { createOptimizer, type Optimizer, type OptimizerName, PagedAdamW, ResidentAdamW } from "./src/train/paged_adamw.ts";
export { lrAt } from "./src/train/schedule.ts";
export { lossCurveSvg, type LossPoint, type LossSvgOptions } from "./src/train/loss_svg.ts";
export { formatDuration, formatThousands } from "./src/train/progress.ts";

// inference
export type { FinishReason, GenerateOptions, GenerationResult } from "./src/infer/generate.ts";
export { Sampler } from "./src/infer/sampler.ts";

// tokenizers and quantization
export * from "./src/tokenizer/mod.ts";
export * from "./src/quant/mod.ts";
