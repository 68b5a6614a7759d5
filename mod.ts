/**
 * edge-peft: parameter-efficient fine-tuning and serving of llama-family models on WebGPU.
 * The public API, re-exports only.
 */
export { PeftError } from "./src/errors.ts";
export { Gpu, Tensor } from "./src/gpu/gpu.ts";
export type { DeviceInfo, Runtime } from "./src/gpu/device.ts";

// files
export { readGGUF, writeGGUF } from "./src/io/gguf.ts";
export type { GgufFile } from "./src/io/gguf.ts";
export { readSafetensors, writeSafetensors } from "./src/io/safetensors.ts";
export { loadAdapterDir, saveAdapterDir } from "./src/io/peft_adapter.ts";
export type { PeftAdapterConfig } from "./src/io/peft_adapter.ts";
export { GGUF_EXPORT_TYPES, type GgufExportType, tensorStorage } from "./src/io/gguf_export_types.ts";
export { type LoraGguf, writeLoraGguf } from "./src/io/gguf_lora.ts";

// models
export { loadModel, Model, openWeights } from "./src/api/model.ts";
export type { GgufSaveReport, HfSaveReport, LoadModelOptions, MemoryReport, ParameterReport } from "./src/api/model.ts";
export { dequantizeWeight, isQuantized, type LinearWeight, type QuantizedLinear, type QuantizeSpec } from "./src/model/quantized.ts";
export { readQuantState } from "./src/model/quantized_4bit.ts";
export { checkTrainingPlan, formatPlan, planTraining, type TrainingPlan, type TrainingPlanOptions } from "./src/train/memory_plan.ts";
export type { LlamaConfig } from "./src/model/config.ts";
export { hfWeights, writeHfDirectory } from "./src/model/hf_weights.ts";
export { ggufWeights } from "./src/model/weights.ts";

// PEFT and training
export { Adapter } from "./src/peft/adapter.ts";
export { PeftModel, type AdapterSelection } from "./src/peft/peft_model.ts";
export { methodFor, SUPPORTED_PEFT_TYPES } from "./src/peft/registry.ts";
export type { MethodConfig, PeftMethod } from "./src/peft/method.ts";
export { normalizeLoraConfig, loraScale } from "./src/peft/lora/config.ts";
export type { LoraConfig } from "./src/peft/lora/config.ts";
export { train } from "./src/train/trainer.ts";
export type { StepRecord, TrainOptions, TrainResult } from "./src/train/trainer.ts";
export { loadDataset } from "./src/train/data.ts";
export { createOptimizer, type Optimizer, type OptimizerName, PagedAdamW, ResidentAdamW } from "./src/train/paged_adamw.ts";
export { lrAt } from "./src/train/schedule.ts";

// inference
export type { FinishReason, GenerateOptions, GenerationResult } from "./src/infer/generate.ts";
export { Sampler } from "./src/infer/sampler.ts";

// tokenizers and quantization
export * from "./src/tokenizer/mod.ts";
export * from "./src/quant/mod.ts";

// serving
export { AdapterRegistry, checkAdapterId, createApp, defaultChatPrompt, Metrics, ModelEngine, onShutdownSignal, startServer } from "./src/serve/mod.ts";
export type {
  AdapterInfo, AppOptions, ChatMessage as ServeChatMessage, Engine, EngineRequest, EngineResult, Generation, ModelEngineOptions, RunningServer,
  ServeOptions,
} from "./src/serve/mod.ts";

export { runCli } from "./src/cli/main.ts";
