/**
 * edge-peft: parameter-efficient fine-tuning and serving of llama-family models on WebGPU.
 * The public API, re-exports only.
 */
export { PeftError } from "./src/errors.ts";
export { Gpu, Tensor } from "./src/gpu/gpu.ts";
export type { DeviceInfo, Runtime } from "./src/gpu/device.ts";
export { readGGUF, writeGGUF } from "./src/io/gguf.ts";
export type { GgufFile } from "./src/io/gguf.ts";
export { loadModel, Model, openWeights } from "./src/model/model.ts";
export type { LoadModelOptions } from "./src/model/model.ts";
export type { LlamaConfig } from "./src/model/config.ts";
export type { FinishReason, GenerateOptions, GenerationResult } from "./src/infer/generate.ts";
export { Sampler } from "./src/infer/sampler.ts";
export * from "./src/tokenizer/mod.ts";
export { runCli } from "./src/cli/main.ts";
