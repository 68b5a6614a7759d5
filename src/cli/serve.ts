/**
 * `serve --model <gguf|hf dir> [--adapters <dir>] [--adapter-store s3://bucket/prefix] [--port 8080] ...`
 * — the OpenAI-compatible adapter server. Every subdirectory of --adapters holding an
 * adapter_config.json is served as "<model>:<subdir>" (loaded on first use); uploads go there too.
 * With --adapter-store, adapters are shared through an S3-compatible bucket (replicas see each
 * other's uploads). Requests run in continuous batches (--batching off: one at a time).
 * SIGINT/SIGTERM shut down gracefully: in-flight requests finish, then the process exits.
 */
import { mkdir, readdir, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import process from "node:process";
import { ADAPTER_ID_PATTERN } from "../infer/adapter_registry.ts";
import { createApp } from "../serve/app.ts";
import { S3AdapterStore } from "../serve/adapter_store.ts";
import { ModelEngine } from "../serve/engine.ts";
import { onShutdownSignal, startServer } from "../serve/server.ts";
import { chatTemplateFlag, resolveChatTemplate } from "./chat_template_flag.ts";
import { type Command, parseFlags, usageError } from "./flags.ts";
import { CONTEXT_FLAG, describeModel, loadModelFromFlags, MODEL_FLAGS } from "./model_flags.ts";

const http = "server", limits = "limits", batching = "batching", store = "adapter store";

export const SERVE = {
  name: "serve",
  summary: "serve the model and its LoRA adapters over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, /v1/adapters)",
  usage: "--model <path.gguf|hf-dir> [--adapters <dir>] [flags]",
  flags: {
    ...MODEL_FLAGS,
    ...CONTEXT_FLAG,
    adapters: {
      type: "string", value: "<dir>", defaultText: "none", group: "model", aliases: ["adapter", "lora"],
      description: 'serve every subdirectory holding adapter_config.json as "<model>:<subdir>" (loaded on first use); uploads go here',
    },
    "chat-template": chatTemplateFlag("model", "for chat requests"),
    port: { type: "int", default: 8080, min: 0, max: 65535, group: http, description: "TCP port; 0 = any free port" },
    host: { type: "string", default: "127.0.0.1", value: "<address>", group: http, aliases: ["hostname", "bind"], description: "interface to listen on (0.0.0.0 = all)" },
    "api-key": {
      type: "string", defaultText: "env EDGE_PEFT_API_KEY, else none", value: "<key>", group: http,
      description: "bearer token required on every route but /health (at least 8 characters)",
    },
    "model-id": { type: "string", defaultText: "the model file's name", value: "<name>", group: http, aliases: ["alias", "served-model-name"], description: "name the base model is served under" },
    quiet: { type: "boolean", group: http, description: "no per-request log line on stderr (method, path, status, adapter, tokens, ms; prompts are never logged)" },
    "max-queue": { type: "int", default: 64, min: 0, units: "requests", group: limits, description: "requests that may wait for the GPU; more get 429 with Retry-After" },
    "timeout-ms": { type: "int", default: 120_000, min: 0, units: "ms", group: limits, description: "limit on queueing plus generation per request; 0 = none" },
    "max-tokens": { type: "int", default: 128, min: 1, units: "tokens", group: limits, aliases: ["n-predict"], description: "max_tokens of requests that give none" },
    "adapter-budget-mb": { type: "number", defaultText: "unlimited", min: 0, units: "MiB", group: limits, description: "GPU memory resident adapters may hold together (least recently used ones are unloaded)" },
    "max-body-bytes": { type: "int", default: 1 << 20, min: 1, units: "bytes", group: limits, description: "largest JSON request body" },
    "max-upload-bytes": { type: "int", default: 256 << 20, min: 1, units: "bytes", group: limits, description: "largest adapter upload" },
    batching: {
      type: "string", default: "continuous", choices: ["continuous", "off"], group: batching,
      description: "continuous: every running request is a row of one batched step, whatever its adapter; off: one generation at a time",
    },
    "max-batch": { type: "int", default: 32, min: 1, units: "requests", group: batching, description: "requests in the running batch at most" },
    "max-step-tokens": { type: "int", default: 256, min: 1, units: "tokens", group: batching, description: "tokens one step forwards at most (decode rows first, then prefill chunks)" },
    "kv-blocks": { type: "int", defaultText: "8 full contexts, at most 1 GiB", min: 1, units: "blocks", group: batching, description: "blocks in the paged KV cache pool (a request reserves its blocks when it joins)" },
    "kv-block-size": { type: "int", default: 16, min: 1, units: "positions", group: batching, description: "positions per KV cache block" },
    "adapter-store": {
      type: "string", value: "<s3://bucket/prefix>", defaultText: "none", group: store,
      description: "share adapters through an S3-compatible bucket (credentials and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)",
    },
    "store-cache": { type: "string", value: "<dir>", defaultText: "a directory under the system temp dir", group: store, description: "local cache of adapters fetched from the store" },
    "store-cache-mb": { type: "number", default: 1024, min: 1, units: "MiB", group: store, description: "bytes the local store cache may hold (least recently used adapters are removed)" },
  },
  notes: [
    "example:",
    "  npx deno task serve --model ../shared/models/stories260K/stories260K.gguf --adapters ./adapters --port 8080",
  ],
} as const satisfies Command;

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(SERVE, args);
  if (!f) return;
  const v = f.values;
  const apiKey = v["api-key"] ?? process.env.EDGE_PEFT_API_KEY ?? undefined;
  if (apiKey !== undefined && apiKey.length < 8) throw usageError("the API key (--api-key or EDGE_PEFT_API_KEY) must be at least 8 characters");
  const modelId = v["model-id"] ?? basename(v.model).replace(/\.gguf$/i, "");
  if (!/^[A-Za-z0-9_.-]{1,128}$/.test(modelId)) throw usageError(`--model-id ${JSON.stringify(modelId)} must be 1-128 characters of A-Z a-z 0-9 _ . -`);
  const budgetMb = v["adapter-budget-mb"];
  if (budgetMb !== undefined && !(budgetMb > 0)) throw usageError("--adapter-budget-mb must be > 0");
  const chatTemplate = await resolveChatTemplate(v["chat-template"]);

  let adapterStore: S3AdapterStore | undefined;
  let adaptersDir = v.adapters;
  if (v["adapter-store"]) {
    const cacheDir = v["store-cache"] ?? join(tmpdir(), `edge-peft-store-${process.pid}`);
    adapterStore = new S3AdapterStore({ url: v["adapter-store"], cacheDir, cacheBytes: v["store-cache-mb"] * 2 ** 20 });
    await adapterStore.cleanCache();
    // Uploads are staged and validated locally before they are published to the store.
    if (!adaptersDir) await mkdir(adaptersDir = join(cacheDir, "uploads"), { recursive: true });
  }

  const model = await loadModelFromFlags(v);
  const engine = new ModelEngine(model, {
    modelId,
    maxQueue: v["max-queue"],
    adapterBudgetBytes: budgetMb === undefined ? undefined : budgetMb * 2 ** 20,
    chatTemplate,
    batching: v.batching as "continuous" | "off",
    maxBatch: v["max-batch"],
    maxStepTokens: v["max-step-tokens"],
    kvBlocks: v["kv-blocks"],
    kvBlockSize: v["kv-block-size"],
    store: adapterStore,
  });
  if (v.adapters) {
    let names: string[] = [];
    try {
      if ((await stat(v.adapters)).isDirectory()) names = (await readdir(v.adapters)).sort();
    } catch { /* created on the first upload */ }
    for (const name of names) {
      const dir = join(v.adapters, name);
      try {
        await stat(join(dir, "adapter_config.json"));
      } catch {
        continue;
      }
      if (!ADAPTER_ID_PATTERN.test(name)) {
        process.stderr.write(`[serve] skipping ${dir}: the directory name is not a valid adapter id\n`);
        continue;
      }
      engine.registry.register(name, dir);
    }
  }
  await engine.refreshAdapters();
  const app = createApp(engine, {
    apiKey,
    adaptersDir,
    requestTimeoutMs: v["timeout-ms"],
    defaultMaxTokens: v["max-tokens"],
    maxBodyBytes: v["max-body-bytes"],
    maxUploadBytes: v["max-upload-bytes"],
    logRequest: v.quiet ? undefined : (line) => void process.stderr.write(`[serve] ${line}\n`),
  });
  const server = await startServer(app, { port: v.port, hostname: v.host, drain: () => engine.idle() });
  const adapters = engine.adapters().map((a) => a.id);
  process.stderr.write(
    `[serve] ${modelId} ${describeModel(model)}; adapters: ${adapters.join(", ") || "none"}` +
      `${adapterStore ? `; adapter store ${adapterStore.description}` : ""}; batching ${v.batching}` +
      `${apiKey ? "; API key required" : ""}\n[serve] listening on ${server.url}\n`,
  );
  let unlisten = () => {};
  await new Promise<void>((resolveDone) => {
    onShutdownSignal((sig) => {
      process.stderr.write(`[serve] ${sig}: finishing in-flight requests\n`);
      server.shutdown().then(() => {
        engine.close();
        model.close();
        process.stderr.write("[serve] stopped\n");
        resolveDone();
      });
    }).then((off) => unlisten = off);
  });
  unlisten();
  // Shut down cleanly: exit now rather than wait on handles the GPU bindings may keep open.
  process.exit(0);
}
