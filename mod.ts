/**
 * edge-peft: parameter-efficient fine-tuning and serving of llama-family models on WebGPU.
 * The public API, re-exports only: everything a web page gets (browser.ts), plus what reads or
 * writes paths, the server and the CLI.
 */
export * from "./browser.ts";

// files by path
export { writeGGUF } from "./src/io/gguf.ts";
export { writeSafetensors } from "./src/io/safetensors.ts";
export { loadAdapterDir, saveAdapterDir } from "./src/io/peft_adapter.ts";
export { type LoraGguf, writeLoraGguf } from "./src/io/gguf_lora.ts";
export { hfWeights, writeHfDirectory } from "./src/model/hf_weights.ts";
export { saveTeacherLogits, type SaveTeacherLogitsOptions } from "./src/train/distill.ts";

// serving
export { AdapterRegistry, checkAdapterId, createApp, defaultChatPrompt, Metrics, ModelEngine, onShutdownSignal, startServer } from "./src/serve/mod.ts";
export type {
  AdapterInfo, AppOptions, ChatMessage as ServeChatMessage, Engine, EngineRequest, EngineResult, Generation, ModelEngineOptions, RunningServer,
  ServeOptions,
} from "./src/serve/mod.ts";

export { runCli } from "./src/cli/main.ts";
