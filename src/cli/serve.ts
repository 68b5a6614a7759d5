/**
 * `serve --model <gguf|hf dir> [--adapters <dir>] [--port 8080] [--host 127.0.0.1] [--api-key K]`
 * — the OpenAI-compatible adapter server. Every subdirectory of --adapters holding an
 * adapter_config.json is served as "<model>:<subdir>" (loaded on first use); uploads go there too.
 * SIGINT/SIGTERM shut down gracefully: in-flight requests finish, then the process exits.
 */
import { readdir, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { PeftError } from "../errors.ts";
import { ADAPTER_ID_PATTERN } from "../infer/adapter_registry.ts";
import { loadModel } from "../api/model.ts";
import { createApp } from "../serve/app.ts";
import { ModelEngine } from "../serve/engine.ts";
import { onShutdownSignal, startServer } from "../serve/server.ts";
import { computeDtypeFlag, numberFlag } from "./generate.ts";

export const SERVE_HELP = `usage: serve --model <path.gguf|hf-dir> [--adapters <dir>] [--port 8080] [--host 127.0.0.1]
             [--api-key KEY] (or env EDGE_PEFT_API_KEY) [--model-id NAME] [--max-queue 64]
             [--adapter-budget-mb N] [--timeout-ms 120000] [--max-tokens 128] [--context-length N]
             [--max-body-bytes 1048576] [--max-upload-bytes 268435456] [--compute-dtype f32|f16|auto]`;

function intFlag(v: string | undefined, name: string, fallback: number, min = 0): number {
  const n = numberFlag(v, name, fallback);
  if (!Number.isInteger(n) || n < min) throw new PeftError("BAD_FLAG", `--${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

export async function main(args: string[]): Promise<void> {
  const { values: v } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      adapters: { type: "string" },
      "compute-dtype": { type: "string" },
      port: { type: "string" },
      host: { type: "string" },
      "api-key": { type: "string" },
      "model-id": { type: "string" },
      "max-queue": { type: "string" },
      "adapter-budget-mb": { type: "string" },
      "timeout-ms": { type: "string" },
      "max-tokens": { type: "string" },
      "context-length": { type: "string" },
      "max-body-bytes": { type: "string" },
      "max-upload-bytes": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (v.help) return void console.log(SERVE_HELP);
  if (!v.model) throw new PeftError("BAD_FLAG", `--model is required\n${SERVE_HELP}`);
  const port = intFlag(v.port, "port", 8080);
  if (port > 65535) throw new PeftError("BAD_FLAG", `--port must be 0..65535, got ${port}`);
  const apiKey = v["api-key"] ?? process.env.EDGE_PEFT_API_KEY ?? undefined;
  if (apiKey !== undefined && apiKey.length < 8) throw new PeftError("BAD_FLAG", "the API key must be at least 8 characters");
  const modelId = v["model-id"] ?? basename(v.model).replace(/\.gguf$/i, "");
  if (!/^[A-Za-z0-9_.-]{1,128}$/.test(modelId)) throw new PeftError("BAD_FLAG", `--model-id ${JSON.stringify(modelId)} must be 1-128 characters of A-Z a-z 0-9 _ . -`);
  const budgetMb = v["adapter-budget-mb"] === undefined ? undefined : numberFlag(v["adapter-budget-mb"], "adapter-budget-mb", 0);
  if (budgetMb !== undefined && !(budgetMb > 0)) throw new PeftError("BAD_FLAG", `--adapter-budget-mb must be > 0`);

  const model = await loadModel(v.model, {
    computeDtype: computeDtypeFlag(v["compute-dtype"]),
    ...(v["context-length"] ? { contextLength: intFlag(v["context-length"], "context-length", 0, 1) } : {}),
  });
  const engine = new ModelEngine(model, {
    modelId,
    maxQueue: intFlag(v["max-queue"], "max-queue", 64),
    adapterBudgetBytes: budgetMb === undefined ? undefined : budgetMb * 2 ** 20,
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
  const app = createApp(engine, {
    apiKey,
    adaptersDir: v.adapters,
    requestTimeoutMs: intFlag(v["timeout-ms"], "timeout-ms", 120_000),
    defaultMaxTokens: intFlag(v["max-tokens"], "max-tokens", 128, 1),
    maxBodyBytes: intFlag(v["max-body-bytes"], "max-body-bytes", 1 << 20, 1),
    maxUploadBytes: intFlag(v["max-upload-bytes"], "max-upload-bytes", 256 << 20, 1),
  });
  const server = await startServer(app, { port, hostname: v.host ?? "127.0.0.1", drain: () => engine.idle() });
  const adapters = engine.adapters().map((a) => a.id);
  process.stderr.write(
    `[serve] ${modelId} on ${model.gpu.info.description} (${server.runtime}); adapters: ${adapters.join(", ") || "none"}` +
      `${apiKey ? "; API key required" : ""}\n[serve] listening on ${server.url}\n`,
  );
  let unlisten = () => {};
  await new Promise<void>((resolveDone) => {
    onShutdownSignal((sig) => {
      process.stderr.write(`[serve] ${sig}: finishing in-flight requests\n`);
      server.shutdown().then(() => {
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
