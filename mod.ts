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

// models
export { loadModel, Model, openWeights } from "./src/model/model.ts";
export type { LoadModelOptions, MemoryReport, ParameterReport } from "./src/model/model.ts";
export { dequantizeWeight, isQuantized, type LinearWeight, type QuantizeSpec, readQuantState } from "./src/model/quantized.ts";
export { checkTrainingPlan, formatPlan, planTraining, type TrainingPlan, type TrainingPlanOptions } from "./src/model/memory_plan.ts";
export type { LlamaConfig } from "./src/model/config.ts";
export { hfWeights, writeHfDirectory } from "./src/model/hf_weights.ts";
export { ggufWeights } from "./src/model/weights.ts";

// PEFT and training
export { LoraAdapter } from "./src/peft/lora.ts";
export { normalizeLoraConfig, loraScale } from "./src/peft/lora_config.ts";
export type { LoraConfig } from "./src/peft/lora_config.ts";
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
