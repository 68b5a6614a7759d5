/**
 * The HTTP app: `createApp(engine, options) -> Hono`, OpenAI-compatible.
 *
 *   GET    /health                  liveness (no auth)
 *   GET    /ready                   readiness: model loaded, adapter store reachable (503 if not; no auth)
 *   GET    /metrics                 Prometheus text (prom-client)
 *   GET    /v1/models[/{id}]        the base model and every adapter ("base", "base:adapter")
 *   POST   /v1/completions          OpenAI completions (stream: true -> SSE)
 *   POST   /v1/chat/completions     OpenAI chat completions (chat template or the default one)
 *   GET    /v1/adapters             adapters with their metadata
 *   POST   /v1/adapters             add an adapter: JSON {id, path} (a PEFT dir inside the adapters
 *                                   directory) or multipart (id, adapter_config.json,
 *                                   adapter_model.safetensors); validated against the base model
 *   DELETE /v1/adapters/{id}        remove an adapter
 *
 * Errors are OpenAI-shaped JSON ({error: {message, type, param, code}}) with a 4xx status for
 * anything the client got wrong; unexpected failures give a plain 500 without details.
 */
import { Hono, type Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { bodyLimit } from "hono/body-limit";
import { streamSSE } from "hono/streaming";
import { mkdir, mkdtemp, realpath, rename, rm, writeFile } from "node:fs/promises";
import { isAbsolute, join, resolve, sep } from "node:path";
import type { ZodType } from "zod";
import { PeftError } from "../errors.ts";
import { ADAPTER_ID_PATTERN } from "../infer/adapter_registry.ts";
import type { AdapterInfo } from "../infer/adapter_registry.ts";
import { type ChatMessage, type Engine, type EngineFinishReason, type EngineRequest, TimeoutError } from "./engine.ts";
import { Metrics } from "./metrics.ts";
import { noteGeneration, requestLog } from "./request_log.ts";
import { AdapterPathRequest, ChatRequest, CompletionRequest, describeIssue } from "./schemas.ts";
import { bodyTimeout, BodyTimeoutError } from "./body_timeout.ts";
import { BodyTooLargeError, MultipartError, readLimited, receiveMultipart } from "./request_body.ts";

export interface AppOptions {
  /** Bearer token required on every route but /health (compared in constant time). */
  apiKey?: string;
  /** Directory adapters are loaded from and uploaded to; without it, POST /v1/adapters is refused. */
  adaptersDir?: string;
  /** Largest JSON body (default 1 MiB). */
  maxBodyBytes?: number;
  /** Largest adapter upload (default 256 MiB). */
  maxUploadBytes?: number;
  /** Per-request limit for queueing + generation in ms (default 120000; 0 = none). */
  requestTimeoutMs?: number;
  /** Longest wait for the next chunk of a request body in ms (default 30000); then 408. */
  bodyIdleTimeoutMs?: number;
  /** Longest time to receive a whole request body in ms (default 300000); then 408. */
  bodyTimeoutMs?: number;
  /** max_tokens when the request gives none (default 128). */
  defaultMaxTokens?: number;
  /** Seconds clients are told to wait in Retry-After when the queue is full (default 1). */
  retryAfterSeconds?: number;
  /** Metrics sink (one is made if not given). */
  metrics?: Metrics;
  /** Where unexpected errors are reported (default console.error). */
  logError?: (e: unknown) => void;
  /** Gets one line per request (method, path, status, adapter, tokens, ms; never prompt text). Default: no log. */
  logRequest?: (line: string) => void;
}

type ErrorType = "invalid_request_error" | "authentication_error" | "not_found_error" | "rate_limit_error" | "server_error";

class HttpError extends Error {
  constructor(
    readonly status: 400 | 401 | 404 | 408 | 409 | 413 | 429 | 499 | 500 | 502 | 503,
    message: string,
    readonly type: ErrorType = "invalid_request_error",
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

function errorBody(message: string, type: ErrorType, code: string | null, param: string | null) {
  return { error: { message, type, param, code } };
}

/** PeftError codes -> status. Unlisted PeftErrors are bad input (400). */
const STATUS_BY_CODE: Record<string, HttpError["status"]> = {
  UNKNOWN_ADAPTER: 404,
  ADAPTER_NOT_FOUND: 400,
  ADAPTER_EXISTS: 409,
  QUEUE_FULL: 429,
  // The paged KV cache cannot hold the request at all; the server is shutting down; the shared
  // adapter store is down (cached adapters keep serving) or holds a corrupt object.
  KV_CACHE_FULL: 503,
  SHUTTING_DOWN: 503,
  ADAPTER_STORE_UNAVAILABLE: 503,
  ADAPTER_STORE_ERROR: 502,
  ADAPTER_STORE_CORRUPT: 502,
};

const isAbort = (e: unknown) => e instanceof DOMException && e.name === "AbortError";

function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof BodyTooLargeError) return new HttpError(413, e.message, "invalid_request_error", "body_too_large");
  if (e instanceof BodyTimeoutError) return new HttpError(408, e.message, "invalid_request_error", "request_timeout");
  if (e instanceof MultipartError) return new HttpError(400, `the multipart body could not be parsed: ${e.message}`, "invalid_request_error", "invalid_multipart");
  // The client went away (e.g. while queued): nginx's 499, nobody reads it; not a server error.
  if (isAbort(e)) return new HttpError(499, "the client closed the request", "invalid_request_error", "client_closed_request");
  if (e instanceof PeftError) {
    const status = STATUS_BY_CODE[e.code] ?? 400;
    const type: ErrorType = status === 404 ? "not_found_error" : status === 429 ? "rate_limit_error" : status >= 500 ? "server_error" : "invalid_request_error";
    return new HttpError(status, e.message, type, e.code.toLowerCase());
  }
  if (e instanceof TimeoutError) return new HttpError(503, e.message, "server_error", "timeout");
  return new HttpError(500, "internal server error", "server_error", null);
}

/** Constant-time comparison of two strings (SHA-256 first, so lengths leak nothing either). */
async function safeEqual(a: string, b: string): Promise<boolean> {
  const enc = new TextEncoder();
  const [ha, hb] = await Promise.all([crypto.subtle.digest("SHA-256", enc.encode(a)), crypto.subtle.digest("SHA-256", enc.encode(b))]);
  const x = new Uint8Array(ha), y = new Uint8Array(hb);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i];
  return diff === 0;
}

/** The matched route without its regex part ("/v1/models/:id"), for metric labels. */
const routeLabel = (c: Context) => (c.req.routePath ?? "unmatched").replace(/\{[^}]*\}/g, "");

let counter = 0;
const newId = (prefix: string) => `${prefix}-${Date.now().toString(36)}${(counter++).toString(36)}${Math.random().toString(36).slice(2, 8)}`;

function mapFinish(r: EngineFinishReason): string {
  return r === "context" ? "length" : r === "abort" ? "stop" : r;
}

export function createApp(engine: Engine, options: AppOptions = {}): Hono {
  const app = new Hono();
  const metrics = options.metrics ?? new Metrics();
  const maxBody = options.maxBodyBytes ?? 1 << 20;
  const maxUpload = options.maxUploadBytes ?? 256 << 20;
  const timeoutMs = options.requestTimeoutMs ?? 120_000;
  const bodyIdleMs = options.bodyIdleTimeoutMs ?? 30_000;
  const bodyTotalMs = options.bodyTimeoutMs ?? 300_000;
  const defaultMaxTokens = options.defaultMaxTokens ?? 128;
  const retryAfter = String(options.retryAfterSeconds ?? 1);
  const logError = options.logError ?? ((e: unknown) => console.error("[serve] unexpected error:", e));
  const base = engine.modelId;
  const created = Math.floor(Date.now() / 1000);
  /** Uploaded in this run (their directories are removed on DELETE). */
  const uploaded = new Set<string>();

  const fail = (c: Context, e: unknown) => {
    const h = toHttpError(e);
    if (h.status === 500) logError(e);
    if (h.status === 499) metrics.countAborted();
    if (h.status === 429) {
      metrics.countQueueFull();
      c.header("Retry-After", retryAfter);
    }
    if (h.status === 503) c.header("Retry-After", retryAfter);
    if (h.status === 401) c.header("WWW-Authenticate", 'Bearer realm="edge-peft"');
    return c.json(errorBody(h.message, h.type, h.code, h.param), h.status as ContentfulStatusCode);
  };

  if (options.logRequest) app.use("*", requestLog(options.logRequest));
  // Metrics for every request (streams record themselves when they end).
  app.use("*", async (c, next) => {
    const t0 = performance.now();
    await next();
    if (!c.get("streamMetrics" as never)) {
      metrics.observeRequest(routeLabel(c), c.req.method, c.res.status, (performance.now() - t0) / 1000);
    }
  });

  app.get("/health", (c) => c.json({ status: "ok", model: base }));
  app.get("/ready", async (c) => {
    const r = engine.ready ? await engine.ready() : { ready: true, detail: "model loaded" };
    if (!r.ready) c.header("Retry-After", retryAfter);
    return c.json({ status: r.ready ? "ready" : "unavailable", model: base, detail: r.detail }, r.ready ? 200 : 503);
  });

  // A body that trickles in (or stops) is answered 408 instead of holding the handler for ever.
  app.use("*", bodyTimeout({
    idleMs: bodyIdleMs,
    totalMs: bodyTotalMs,
    onTimeout: (c, message) => fail(c, new HttpError(408, message, "invalid_request_error", "request_timeout")),
  }));

  // Bearer auth on everything else.
  app.use("*", async (c, next) => {
    if (options.apiKey === undefined || c.req.path === "/health" || c.req.path === "/ready") return await next();
    const h = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(.+)$/i.exec(h);
    if (!m || !(await safeEqual(m[1].trim(), options.apiKey))) {
      return fail(c, new HttpError(401, m ? "invalid API key" : "missing API key (Authorization: Bearer <key>)", "authentication_error", "invalid_api_key"));
    }
    await next();
  });

  const jsonLimit = bodyLimit({ maxSize: maxBody, onError: (c) => fail(c, new HttpError(413, `request body is larger than ${maxBody} bytes`, "invalid_request_error", "body_too_large")) });

  async function parse<T>(c: Context, schema: ZodType<T>): Promise<T> {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      throw new HttpError(400, "the request body is not valid JSON", "invalid_request_error", "invalid_json");
    }
    const r = schema.safeParse(body);
    if (!r.success) {
      const { message, param } = describeIssue(r.error);
      throw new HttpError(400, message, "invalid_request_error", "invalid_value", param);
    }
    return r.data;
  }

  /** True when the engine knows the adapter, asking the shared store (if any) about ids it does not know yet. */
  async function knownAdapter(id: string): Promise<boolean> {
    return engine.hasAdapter(id) || (!!engine.lookupAdapter && await engine.lookupAdapter(id));
  }

  /** "base" or "base:adapter" -> adapter id (undefined for the base). */
  async function resolveModel(model: string): Promise<string | undefined> {
    if (model === base) return undefined;
    const prefix = `${base}:`;
    if (model.startsWith(prefix)) {
      const id = model.slice(prefix.length);
      if (!ADAPTER_ID_PATTERN.test(id)) throw new HttpError(400, `invalid adapter id in model ${JSON.stringify(model)}`, "invalid_request_error", "invalid_model", "model");
      if (await knownAdapter(id)) return id;
    }
    throw new HttpError(404, `the model ${JSON.stringify(model)} does not exist (GET /v1/models lists them)`, "not_found_error", "model_not_found", "model");
  }

  function modelObject(a?: AdapterInfo) {
    if (!a) {
      return { id: base, object: "model", created, owned_by: "edge-peft", context_length: engine.contextLength, parameters: engine.baseParameters };
    }
    return {
      id: `${base}:${a.id}`,
      object: "model",
      created,
      owned_by: "edge-peft",
      parent: base,
      adapter: {
        id: a.id,
        type: a.peft_type ?? "LORA",
        r: a.r ?? null,
        lora_alpha: a.lora_alpha ?? null,
        target_modules: a.target_modules ?? null,
        size_bytes: a.bytes ?? null,
        trainable_parameters: a.trainableParameters ?? null,
        resident: a.resident,
      },
    };
  }

  app.get("/v1/models", async (c) => {
    await engine.refreshAdapters?.();
    return c.json({ object: "list", data: [modelObject(), ...engine.adapters().map(modelObject)] });
  });
  app.get("/v1/models/:id{.+}", async (c) => {
    try {
      const id = await resolveModel(c.req.param("id"));
      return c.json(modelObject(id === undefined ? undefined : engine.adapters().find((a) => a.id === id)));
    } catch (e) {
      return fail(c, e);
    }
  });

  app.get("/metrics", async (c) => c.text(await metrics.render(engine.stats()), 200, { "Content-Type": metrics.contentType }));

  interface Common {
    model: string;
    max_tokens?: number | null;
    temperature?: number | null;
    top_p?: number | null;
    top_k?: number | null;
    seed?: number | null;
    stop?: string | string[] | null;
    stream?: boolean | null;
    stream_options?: { include_usage?: boolean } | null;
    lora?: { id: string; scale: number }[] | null;
  }

  async function engineRequest(c: Context, body: Common, ids: number[], maxTokens: number | null | undefined, adapter: string | undefined): Promise<EngineRequest & { clampedTo?: number }> {
    const temperature = body.temperature ?? 1;
    let adapters: EngineRequest["adapters"];
    if (body.lora) {
      if (adapter !== undefined) throw new HttpError(400, "lora: give either model \"base:adapter\" or lora, not both", "invalid_request_error", "invalid_value", "lora");
      adapters = [];
      for (const l of body.lora) {
        if (!ADAPTER_ID_PATTERN.test(l.id) || !(await knownAdapter(l.id))) {
          throw new HttpError(404, `lora: no adapter named ${JSON.stringify(l.id)} (GET /v1/adapters lists them)`, "not_found_error", "model_not_found", "lora");
        }
        adapters.push({ id: l.id, weight: l.scale });
      }
    }
    // More tokens than the context has room for cannot be generated: ask for what fits and say so.
    const room = Math.max(1, engine.contextLength - ids.length);
    const wanted = maxTokens ?? defaultMaxTokens;
    return {
      ids,
      adapter,
      adapters,
      maxTokens: Math.min(wanted, room),
      clampedTo: wanted > room ? room : undefined,
      temperature,
      topK: body.top_k ?? 0,
      topP: body.top_p ?? 1,
      seed: body.seed ?? Math.floor(Math.random() * 2 ** 31),
      stop: body.stop == null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop,
      signal: c.req.raw.signal,
      timeoutMs,
    };
  }

  /** Runs a generation as a JSON response or an SSE stream; `shape` builds the OpenAI objects. */
  async function respond(
    c: Context,
    body: Common,
    req: EngineRequest & { clampedTo?: number },
    shape: {
      object: string;
      chunkObject: string;
      idPrefix: string;
      full(text: string, finish: string): unknown[];
      first?(): unknown;
      delta(text: string): unknown;
      final(finish: string): unknown;
    },
  ) {
    const id = newId(shape.idPrefix);
    const now = Math.floor(Date.now() / 1000);
    const modelName = body.model;
    const usage = (s: { promptTokens: number; completionTokens: number }) => ({
      prompt_tokens: s.promptTokens,
      completion_tokens: s.completionTokens,
      total_tokens: s.promptTokens + s.completionTokens,
      // max_tokens was more than the context has room for after the prompt: this is what was used.
      ...(req.clampedTo !== undefined ? { max_tokens_clamped_to: req.clampedTo } : {}),
    });
    const gen = await engine.start(req); // throws QUEUE_FULL / UNKNOWN_ADAPTER / abort before anything is sent
    if (!body.stream) {
      try {
        let text = "";
        let r = await gen.pieces.next();
        while (!r.done) {
          text += r.value.text;
          r = await gen.pieces.next();
        }
        const s = r.value;
        metrics.observeGeneration(modelName, s.promptTokens, s.completionTokens, req.adapter ?? req.adapters?.map((a) => a.id).join("+"));
        noteGeneration(c, req.adapter, s);
        if (s.finishReason === "abort") metrics.countAborted();
        return c.json({
          id,
          object: shape.object,
          created: now,
          model: modelName,
          choices: shape.full(text, mapFinish(s.finishReason)),
          usage: usage(s),
        });
      } finally {
        gen.release();
      }
    }
    c.set("streamMetrics" as never, true as never);
    const t0 = performance.now();
    const route = routeLabel(c);
    return streamSSE(c, async (stream) => {
      const ctl = new AbortController();
      stream.onAbort(() => ctl.abort());
      const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
        stream.writeSSE({ data: JSON.stringify({ id, object: shape.chunkObject, created: now, model: modelName, choices, ...extra }) });
      let status = 200;
      try {
        if (shape.first) await chunk([shape.first()]);
        let r = await gen.pieces.next();
        while (!r.done) {
          if (ctl.signal.aborted || stream.aborted) break;
          if (r.value.text) await chunk([shape.delta(r.value.text)]);
          r = await gen.pieces.next();
        }
        if (r.done && r.value.finishReason === "abort") {
          // The client went away and the engine noticed first: a disconnect, nothing to write.
          metrics.observeGeneration(modelName, r.value.promptTokens, r.value.completionTokens, req.adapter ?? req.adapters?.map((a) => a.id).join("+"));
          metrics.countAborted();
          status = 499;
        } else if (r.done) {
          const s = r.value;
          metrics.observeGeneration(modelName, s.promptTokens, s.completionTokens, req.adapter ?? req.adapters?.map((a) => a.id).join("+"));
          noteGeneration(c, req.adapter, s);
          await chunk([shape.final(mapFinish(s.finishReason))]);
          if (body.stream_options?.include_usage) await chunk([], { usage: usage(s) });
          await stream.writeSSE({ data: "[DONE]" });
        } else {
          metrics.countAborted();
          status = 499;
          await gen.pieces.return(undefined as never);
        }
      } catch (e) {
        // Headers (200) are sent: the failure ends the stream as an OpenAI-style error event,
        // never as an empty body (the openai SDKs raise it as an APIError).
        const h = toHttpError(e);
        status = h.status;
        if (h.status === 500) logError(e);
        if (h.status === 499) metrics.countAborted();
        else await stream.writeSSE({ event: "error", data: JSON.stringify(errorBody(h.message, h.type, h.code, h.param)) }).catch(() => {});
      } finally {
        gen.release();
        metrics.observeRequest(route, "POST", status, (performance.now() - t0) / 1000);
      }
    });
  }

  app.post("/v1/completions", jsonLimit, async (c) => {
    try {
      const body = await parse(c, CompletionRequest);
      const adapter = await resolveModel(body.model);
      const p = body.prompt;
      const ids = typeof p === "string" ? engine.encodeText(p) : typeof p[0] === "string" ? engine.encodeText(p[0] as string) : (p as number[]);
      if (typeof p !== "string" && typeof p[0] === "number") {
        // Token ids must be in the vocabulary; the engine validates the length.
        const bad = (p as number[]).find((t) => t >= engine.vocabSize);
        if (bad !== undefined) throw new HttpError(400, `prompt: token id ${bad} is outside the vocabulary`, "invalid_request_error", "invalid_value", "prompt");
      }
      const req = await engineRequest(c, body, ids, body.max_tokens, adapter);
      return await respond(c, body, req, {
        object: "text_completion",
        chunkObject: "text_completion",
        idPrefix: "cmpl",
        full: (text, finish) => [{ index: 0, text, logprobs: null, finish_reason: finish }],
        delta: (text) => ({ index: 0, text, logprobs: null, finish_reason: null }),
        final: (finish) => ({ index: 0, text: "", logprobs: null, finish_reason: finish }),
      });
    } catch (e) {
      return fail(c, e);
    }
  });

  app.post("/v1/chat/completions", jsonLimit, async (c) => {
    try {
      const body = await parse(c, ChatRequest);
      const adapter = await resolveModel(body.model);
      const messages: ChatMessage[] = body.messages.map((m) => ({
        role: m.role === "developer" ? "system" : m.role,
        content: typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join(""),
      }));
      const ids = engine.encodeChat(messages);
      const req = await engineRequest(c, body, ids, body.max_completion_tokens ?? body.max_tokens, adapter);
      return await respond(c, body, req, {
        object: "chat.completion",
        chunkObject: "chat.completion.chunk",
        idPrefix: "chatcmpl",
        full: (text, finish) => [{ index: 0, message: { role: "assistant", content: text }, logprobs: null, finish_reason: finish }],
        first: () => ({ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }),
        delta: (text) => ({ index: 0, delta: { content: text }, logprobs: null, finish_reason: null }),
        final: (finish) => ({ index: 0, delta: {}, logprobs: null, finish_reason: finish }),
      });
    } catch (e) {
      return fail(c, e);
    }
  });

  // ---- adapters -------------------------------------------------------------------------------

  function adapterIdFrom(raw: unknown): string {
    let id = typeof raw === "string" ? raw : "";
    if (id.startsWith(`${base}:`)) id = id.slice(base.length + 1);
    if (!ADAPTER_ID_PATTERN.test(id)) {
      throw new HttpError(
        400,
        `invalid adapter id ${JSON.stringify(String(raw).slice(0, 80))}: use 1-64 characters of A-Z a-z 0-9 _ . - starting with a letter, digit or _`,
        "invalid_request_error",
        "invalid_adapter_id",
        "id",
      );
    }
    return id;
  }

  async function adaptersRoot(): Promise<string> {
    if (!options.adaptersDir) {
      throw new HttpError(400, "this server was started without an adapters directory (--adapters), so it cannot add adapters", "invalid_request_error", "no_adapters_dir");
    }
    await mkdir(options.adaptersDir, { recursive: true });
    return await realpath(options.adaptersDir);
  }

  /** A PEFT directory inside the adapters directory (symlinks resolved), else 400. */
  async function confinedDir(path: string): Promise<string> {
    const root = await adaptersRoot();
    if (path.includes("\0")) throw new HttpError(400, "path: invalid characters", "invalid_request_error", "invalid_path", "path");
    const joined = isAbsolute(path) ? resolve(path) : resolve(root, path);
    let real: string;
    try {
      real = await realpath(joined);
    } catch {
      real = joined;
    }
    if (real === root || !real.startsWith(root + sep)) {
      throw new HttpError(400, "path: must be a directory inside the server's adapters directory", "invalid_request_error", "invalid_path", "path");
    }
    return real;
  }

  app.get("/v1/adapters", async (c) => {
    await engine.refreshAdapters?.();
    return c.json({ object: "list", data: engine.adapters().map(modelObject) });
  });

  /**
   * An adapter load's error with the server's own path replaced by what the client named (its
   * path or its upload's id): the server's directories are nobody else's business.
   */
  function asClientSees(e: unknown, serverPath: string, shown: string): unknown {
    if (!(e instanceof PeftError) || !e.message.includes(serverPath)) return e;
    return new PeftError(e.code, e.message.split(serverPath).join(shown), { cause: e });
  }

  app.post("/v1/adapters", async (c) => {
    try {
      const type = c.req.header("content-type") ?? "";
      if (type.toLowerCase().startsWith("multipart/form-data")) return await upload(c);
      let body: unknown;
      try {
        body = JSON.parse(new TextDecoder().decode(await readLimited(c.req.raw, maxBody)));
      } catch (e) {
        if (e instanceof BodyTooLargeError) throw e;
        if (e instanceof BodyTimeoutError || isAbort(e)) throw e;
        throw new HttpError(400, "the request body is not valid JSON", "invalid_request_error", "invalid_json");
      }
      const r = AdapterPathRequest.safeParse(body);
      if (!r.success) {
        const { message, param } = describeIssue(r.error);
        throw new HttpError(400, message, "invalid_request_error", "invalid_value", param);
      }
      const id = adapterIdFrom(r.data.id);
      if (await knownAdapter(id)) throw new HttpError(409, `an adapter named ${id} already exists`, "invalid_request_error", "adapter_exists", "id");
      const dir = await confinedDir(r.data.path);
      try {
        return c.json(modelObject(await engine.addAdapter(id, dir)), 201);
      } catch (e) {
        throw asClientSees(e, dir, r.data.path);
      }
    } catch (e) {
      return fail(c, e);
    }
  });

  /**
   * Multipart upload: the parts stream into a staging directory inside the adapters directory
   * (".upload-*": never an adapter id), which becomes the adapter's directory once it validates.
   */
  async function upload(c: Context) {
    const root = await adaptersRoot();
    const staging = await mkdtemp(join(root, ".upload-"));
    const weightsPath = join(staging, "adapter_model.safetensors");
    try {
      const { fields, files } = await receiveMultipart(c.req.raw, {
        maxBytes: maxUpload,
        maxFieldBytes: maxBody,
        files: { "adapter_model.safetensors": weightsPath, weights: weightsPath },
      });
      const id = adapterIdFrom(fields.get("id"));
      const configText = fields.get("adapter_config.json") ?? fields.get("config");
      if (configText === undefined || files.size !== 1) {
        throw new HttpError(
          400,
          "an upload needs the fields id, adapter_config.json (file or text) and adapter_model.safetensors (file)",
          "invalid_request_error",
          "missing_field",
          configText === undefined ? "adapter_config.json" : "adapter_model.safetensors",
        );
      }
      try {
        JSON.parse(configText);
      } catch (e) {
        throw new HttpError(400, `adapter_config.json is not valid JSON (${(e as Error).message})`, "invalid_request_error", "adapter_bad_config", "adapter_config.json");
      }
      if (await knownAdapter(id)) throw new HttpError(409, `an adapter named ${id} already exists`, "invalid_request_error", "adapter_exists", "id");
      const dir = join(root, id); // id is [A-Za-z0-9_][A-Za-z0-9_.-]*: one path component, never "." or ".."
      try {
        await mkdir(dir);
      } catch {
        throw new HttpError(409, `the adapters directory already has an entry named ${id}`, "invalid_request_error", "adapter_exists", "id");
      }
      try {
        await rename(weightsPath, join(dir, "adapter_model.safetensors"));
        await writeFile(join(dir, "adapter_config.json"), configText);
        const info = await engine.addAdapter(id, dir); // validated against the base model
        uploaded.add(id);
        return c.json(modelObject(info), 201);
      } catch (e) {
        await rm(dir, { recursive: true, force: true });
        throw asClientSees(e, dir, id);
      }
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  app.delete("/v1/adapters/:id{.+}", async (c) => {
    try {
      const id = adapterIdFrom(c.req.param("id"));
      await knownAdapter(id);
      const info = engine.adapters().find((a) => a.id === id);
      if (!info) throw new HttpError(404, `no adapter named ${id}`, "not_found_error", "adapter_not_found", "id");
      await engine.deleteAdapter(id);
      if (uploaded.delete(id) && info.dir && options.adaptersDir) {
        const root = await realpath(options.adaptersDir);
        if (info.dir.startsWith(root + sep)) await rm(info.dir, { recursive: true, force: true });
      }
      return c.json({ id: `${base}:${id}`, object: "model", deleted: true });
    } catch (e) {
      return fail(c, e);
    }
  });

  app.notFound((c) => fail(c, new HttpError(404, `no route ${c.req.method} ${c.req.path}`, "not_found_error", "unknown_route")));
  app.onError((e, c) => fail(c, e));
  return app;
}
