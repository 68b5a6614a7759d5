/** The adapter server: the Hono app, its engine over a Model, and the runtime entry points. */
export { type AppOptions, createApp } from "./app.ts";
export { type ChatMessage, defaultChatPrompt, type Engine, type EngineRequest, type EngineResult, type Generation, ModelEngine, type ModelEngineOptions } from "./engine.ts";
export { Metrics } from "./metrics.ts";
export { onShutdownSignal, type RunningServer, type ServeOptions, startServer } from "./server.ts";
export { AdapterRegistry, type AdapterInfo, checkAdapterId } from "../infer/adapter_registry.ts";
