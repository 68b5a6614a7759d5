/**
 * The adapter server over real HTTP on 127.0.0.1 (Deno.serve), with the real stories260K model:
 * concurrent mixed-adapter requests equal sequential greedy runs, streaming equals non-streaming,
 * disconnects free the slot, uploads are validated, auth and path checks hold, and malformed
 * bodies never give a 5xx.
 */
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { createApp } from "../../src/serve/app.ts";
import { ModelEngine } from "../../src/serve/engine.ts";
import { type RunningServer, startServer } from "../../src/serve/server.ts";
import { fixture, MAX_TOKENS, PROMPTS, sseData } from "./fixture.ts";

const KEY = "test-key-0123456789";
const BASE = "stories260K";
const opts = { sanitizeOps: false, sanitizeResources: false };

interface Srv {
  server: RunningServer;
  engine: ModelEngine;
}
let srv: Promise<Srv> | null = null;
function server(): Promise<Srv> {
  return srv ??= (async () => {
    const f = await fixture();
    const engine = new ModelEngine(f.model, { modelId: BASE, maxQueue: 64 });
    for (const name of ["alpha", "beta"]) engine.registry.register(name, `${f.adaptersDir}/${name}`);
    const app = createApp(engine, { apiKey: KEY, adaptersDir: f.adaptersDir, maxUploadBytes: 1 << 20, logError: () => {} });
    return { server: await startServer(app, { port: 0, drain: () => engine.idle() }), engine };
  })();
}

async function api(path: string, init: { method?: string; body?: unknown; headers?: Record<string, string>; raw?: BodyInit; signal?: AbortSignal } = {}) {
  const { server: s } = await server();
  const headers: Record<string, string> = { authorization: `Bearer ${KEY}`, ...(init.headers ?? {}) };
  let body: BodyInit | undefined = init.raw;
  if (init.body !== undefined) {
    body = JSON.stringify(init.body);
    headers["content-type"] = "application/json";
  }
  return await fetch(s.url + path, { method: init.method ?? (body ? "POST" : "GET"), headers, body, signal: init.signal });
}

async function complete(model: string, prompt: string, extra: Record<string, unknown> = {}) {
  const r = await api("/v1/completions", { body: { model, prompt, max_tokens: MAX_TOKENS, temperature: 0, ...extra } });
  const j = await r.json();
  assert.equal(r.status, 200, JSON.stringify(j));
  return j;
}

Deno.test("GET /v1/models lists the base and each adapter with r, alpha, targets, size", opts, async () => {
  const r = await api("/v1/models");
  assert.equal(r.status, 200);
  const j = await r.json();
  assert.equal(j.object, "list");
  assert.deepEqual(j.data.map((m: { id: string }) => m.id), [BASE, `${BASE}:alpha`, `${BASE}:beta`]);
  assert.equal(j.data[0].context_length, 2048);
  // Metadata is known once an adapter has been loaded; load alpha via a request, then look again.
  await complete(`${BASE}:alpha`, "Hi", { max_tokens: 1 });
  const a = (await (await api(`/v1/models/${BASE}:alpha`)).json()).adapter;
  assert.deepEqual([a.r, a.lora_alpha, a.target_modules, a.resident], [4, 8, ["q_proj", "v_proj"], true]);
  // q_proj [64x64] and v_proj [32x64] per layer, r=4: A [4,64] + B [out,4] in f32, 5 layers.
  assert.equal(a.size_bytes, 5 * ((4 * 64 + 64 * 4) + (4 * 64 + 32 * 4)) * 4);
  assert.equal((await api(`/v1/models/${BASE}:nope`)).status, 404);
});

Deno.test("30 concurrent requests mixing base and two adapters equal sequential greedy generation", opts, async () => {
  const f = await fixture();
  // The adapters really change the output (else this test could not fail).
  for (const p of PROMPTS) {
    assert.notEqual(f.expected.alpha[p], f.expected.base[p]);
    assert.notEqual(f.expected.beta[p], f.expected.base[p]);
  }
  const models = ["base", "alpha", "beta"];
  const jobs = Array.from({ length: 30 }, (_, i) => ({ m: models[i % 3], p: PROMPTS[(i * 7) % PROMPTS.length] }));
  const results = await Promise.all(jobs.map(async (job) => {
    const model = job.m === "base" ? BASE : `${BASE}:${job.m}`;
    const j = await complete(model, job.p);
    return j.choices[0].text as string;
  }));
  jobs.forEach((job, i) => assert.equal(results[i], f.expected[job.m][job.p], `request ${i} (${job.m}, ${JSON.stringify(job.p)})`));
  const j = await complete(`${BASE}:beta`, PROMPTS[0]);
  assert.equal(j.object, "text_completion");
  assert.equal(j.model, `${BASE}:beta`);
  assert.equal(j.choices[0].finish_reason, "length");
  assert.equal(j.usage.completion_tokens, MAX_TOKENS);
  assert.equal(j.usage.total_tokens, j.usage.prompt_tokens + MAX_TOKENS);
});

Deno.test("streaming yields the same text as non-streaming (completions and chat)", opts, async () => {
  const f = await fixture();
  const r = await api("/v1/completions", {
    body: { model: `${BASE}:alpha`, prompt: PROMPTS[2], max_tokens: MAX_TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true } },
  });
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type") ?? "", /text\/event-stream/);
  const data = sseData(await r.text());
  assert.equal(data.at(-1), "[DONE]");
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  const text = chunks.flatMap((c) => c.choices.map((x: { text: string }) => x.text)).join("");
  assert.equal(text, f.expected.alpha[PROMPTS[2]]);
  assert.ok(chunks.length > 3, "several chunks");
  assert.equal(chunks.at(-2).choices[0].finish_reason, "length");
  assert.equal(chunks.at(-1).usage.completion_tokens, MAX_TOKENS);

  const chatBody = { model: `${BASE}:beta`, messages: [{ role: "system", content: "Tell a story." }, { role: "user", content: "A dog" }], max_tokens: MAX_TOKENS, temperature: 0 };
  const plain = await (await api("/v1/chat/completions", { body: chatBody })).json();
  assert.equal(plain.object, "chat.completion");
  assert.equal(plain.choices[0].message.role, "assistant");
  const expectChat = await f.model.complete("system: Tell a story.\nuser: A dog\nassistant:", { maxTokens: MAX_TOKENS, temperature: 0, adapter: undefined });
  assert.equal(typeof plain.choices[0].message.content, "string");
  assert.ok(plain.choices[0].message.content.length > 0);
  // The default chat template (stories260K has none) is what the base model sees.
  const baseChat = await (await api("/v1/chat/completions", { body: { ...chatBody, model: BASE } })).json();
  assert.equal(baseChat.choices[0].message.content, expectChat);
  const sr = await api("/v1/chat/completions", { body: { ...chatBody, stream: true } });
  const sd = sseData(await sr.text());
  assert.equal(sd.at(-1), "[DONE]");
  const sc = sd.slice(0, -1).map((d) => JSON.parse(d));
  assert.equal(sc[0].object, "chat.completion.chunk");
  assert.equal(sc[0].choices[0].delta.role, "assistant");
  assert.equal(sc.map((c) => c.choices[0].delta.content ?? "").join(""), plain.choices[0].message.content);
});

Deno.test("a disconnect mid-stream stops generation and frees the slot", opts, async () => {
  const { engine } = await server();
  const ctl = new AbortController();
  const r = await api("/v1/completions", { body: { model: BASE, prompt: "Once", max_tokens: 1500, temperature: 0, stream: true }, signal: ctl.signal });
  const reader = r.body!.getReader();
  await reader.read(); // the first chunk arrived: the generation is running
  assert.equal(engine.stats().running, 1);
  ctl.abort();
  await reader.cancel().catch(() => {});
  const t0 = Date.now();
  while (engine.stats().running > 0 && Date.now() - t0 < 10_000) await new Promise((res) => setTimeout(res, 20));
  assert.equal(engine.stats().running, 0, "the slot was freed");
  const m = await (await api("/metrics")).text();
  const tokens = Number(/edgepeft_model_completion_tokens_total\{model="stories260K"\} (\d+)/.exec(m)?.[1] ?? "0");
  assert.ok(/edgepeft_generations_aborted_total [1-9]/.test(m), "counted as aborted");
  assert.ok(tokens < 1500, `stopped early (${tokens} base tokens in all so far)`);
  await complete(BASE, PROMPTS[0]); // the server keeps serving
});

Deno.test("upload an adapter, use it, delete it", opts, async () => {
  const f = await fixture();
  const form = new FormData();
  form.set("id", "gamma");
  form.set("adapter_config.json", new Blob([f.gammaFiles.config]), "adapter_config.json");
  form.set("adapter_model.safetensors", new Blob([f.gammaFiles.weights as BlobPart]), "adapter_model.safetensors");
  const r = await api("/v1/adapters", { method: "POST", raw: form });
  const j = await r.json();
  assert.equal(r.status, 201, JSON.stringify(j));
  assert.equal(j.id, `${BASE}:gamma`);
  assert.deepEqual(j.adapter.target_modules, ["k_proj", "gate_proj"]);
  assert.ok((await readdir(f.adaptersDir)).includes("gamma"));
  const out = await complete(`${BASE}:gamma`, PROMPTS[1]);
  assert.equal(out.choices[0].text, f.expected.gamma[PROMPTS[1]]);
  // Same id again: 409.
  assert.equal((await api("/v1/adapters", { method: "POST", raw: form })).status, 409);
  const d = await api(`/v1/adapters/gamma`, { method: "DELETE" });
  assert.equal(d.status, 200);
  assert.deepEqual(await d.json(), { id: `${BASE}:gamma`, object: "model", deleted: true });
  assert.ok(!(await readdir(f.adaptersDir)).includes("gamma"), "uploaded files removed");
  const gone = await api("/v1/completions", { body: { model: `${BASE}:gamma`, prompt: "x", max_tokens: 1 } });
  assert.equal(gone.status, 404);
  assert.equal((await gone.json()).error.code, "model_not_found");
  assert.equal((await api(`/v1/adapters/gamma`, { method: "DELETE" })).status, 404);
  // From a directory inside the adapters dir (JSON {id, path}).
  const p = await api("/v1/adapters", { body: { id: "alpha2", path: "alpha" } });
  assert.equal(p.status, 201, await p.clone().text());
  assert.equal((await complete(`${BASE}:alpha2`, PROMPTS[3])).choices[0].text, f.expected.alpha[PROMPTS[3]]);
  assert.equal((await api(`/v1/adapters/${BASE}:alpha2`, { method: "DELETE" })).status, 200);
  assert.ok((await readdir(f.adaptersDir)).includes("alpha"), "a path-added adapter's files stay");
});

Deno.test("malformed adapter uploads get a clear 4xx and the server keeps serving", opts, async () => {
  const f = await fixture();
  const cfg = JSON.parse(f.gammaFiles.config);
  const upload = async (config: string, weights: Uint8Array, id = "bad") => {
    const form = new FormData();
    form.set("id", id);
    form.set("adapter_config.json", new Blob([config]), "adapter_config.json");
    form.set("adapter_model.safetensors", new Blob([weights as BlobPart]), "adapter_model.safetensors");
    const r = await api("/v1/adapters", { method: "POST", raw: form });
    return { status: r.status, body: await r.json() };
  };
  const cases: [string, string, Uint8Array, number, RegExp][] = [
    ["bad JSON", "{not json", f.gammaFiles.weights, 400, /not valid JSON/],
    ["shape mismatch (r)", JSON.stringify({ ...cfg, r: 8 }), f.gammaFiles.weights, 400, /shape/],
    ["unknown peft_type", JSON.stringify({ ...cfg, peft_type: "NOPE" }), f.gammaFiles.weights, 400, /peft_type/],
    ["not safetensors", f.gammaFiles.config, new TextEncoder().encode("garbage bytes"), 400, /./],
    ["wrong base (more layers)", f.gammaFiles.config, wrongBase(f.gammaFiles.weights), 400, /layer/],
    ["oversized", f.gammaFiles.config, new Uint8Array((1 << 20) + 10), 413, /larger than/],
  ];
  for (const [what, config, weights, status, msg] of cases) {
    const r = await upload(config, weights);
    assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
    assert.match(r.body.error.message, msg, what);
    assert.ok(!/at .*\.ts:\d+/.test(r.body.error.message), "no stack trace");
  }
  assert.ok(!(await readdir(f.adaptersDir)).includes("bad"), "nothing left behind");
  const models = await (await api("/v1/models")).json();
  assert.ok(!models.data.some((m: { id: string }) => m.id.endsWith(":bad")));
  await complete(BASE, PROMPTS[0]);
});

/** Renames layer 0's tensors to layer 9 (stories260K has 5 layers): an adapter for another base. */
function wrongBase(weights: Uint8Array): Uint8Array {
  const n = Number(new DataView(weights.buffer, weights.byteOffset).getBigUint64(0, true));
  const header = new TextDecoder().decode(weights.subarray(8, 8 + n)).replaceAll("layers.0.", "layers.9.");
  const h = new TextEncoder().encode(header);
  assert.equal(h.length, n);
  const out = new Uint8Array(weights);
  out.set(h, 8);
  return out;
}

Deno.test("auth: missing or wrong key -> 401 on every protected route; /health is open", opts, async () => {
  const { server: s } = await server();
  const routes: [string, string][] = [
    ["GET", "/v1/models"], ["GET", `/v1/models/${BASE}`], ["POST", "/v1/completions"], ["POST", "/v1/chat/completions"],
    ["GET", "/v1/adapters"], ["POST", "/v1/adapters"], ["DELETE", "/v1/adapters/alpha"], ["GET", "/metrics"], ["GET", "/nope"],
  ];
  for (const [method, path] of routes) {
    for (const auth of [undefined, "Bearer wrong-key-0123456789", `Bearer ${KEY}x`, KEY, "Basic abc"]) {
      const r = await fetch(s.url + path, {
        method,
        headers: auth ? { authorization: auth, "content-type": "application/json" } : { "content-type": "application/json" },
        body: method === "POST" ? JSON.stringify({ model: BASE, prompt: "x", max_tokens: 1 }) : undefined,
      });
      assert.equal(r.status, 401, `${method} ${path} with ${auth}`);
      assert.equal((await r.json()).error.type, "authentication_error");
    }
  }
  const h = await fetch(s.url + "/health");
  assert.equal(h.status, 200);
  assert.equal((await h.json()).status, "ok");
  assert.ok((await readdir((await fixture()).adaptersDir)).includes("alpha"), "DELETE without a key did nothing");
});

Deno.test("path traversal and unsafe adapter ids -> 400", opts, async () => {
  const bad = ["../alpha", "..", ".", "a/b", "a\\b", "/etc", ".hidden", "-x", "a".repeat(65), "", "a b", "%2e%2e"];
  for (const id of bad) {
    const r = await api("/v1/adapters", { body: { id, path: "alpha" } });
    assert.equal(r.status, 400, `id ${JSON.stringify(id)}`);
  }
  for (const path of ["../..", "..", "/etc", "/tmp", "alpha/../../x", "../outside/gamma", "."]) {
    const r = await api("/v1/adapters", { body: { id: "ok_id", path } });
    const j = await r.json();
    assert.equal(r.status, 400, `path ${path}: ${JSON.stringify(j)}`);
  }
  // (a bare "%2e%2e" segment is resolved to ".." by the client's URL parser before it is sent)
  for (const raw of ["..%2F..%2Fetc", "a%2Fb", "%2e%2e%2f", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%5c..%5cwin"]) {
    const r = await api(`/v1/adapters/${raw}`, { method: "DELETE" });
    assert.equal(r.status, 400, `DELETE /v1/adapters/${raw}`);
  }
  for (const model of [`${BASE}:../alpha`, `${BASE}:a/b`]) {
    const r = await api("/v1/completions", { body: { model, prompt: "x", max_tokens: 1 } });
    assert.equal(r.status, 400, model);
  }
  const form = new FormData();
  form.set("id", "../escape");
  form.set("adapter_config.json", "{}");
  form.set("adapter_model.safetensors", new Blob([new Uint8Array(8)]), "w");
  assert.equal((await api("/v1/adapters", { method: "POST", raw: form })).status, 400);
});

Deno.test("request validation: OpenAI-shaped 4xx errors naming the field", opts, async () => {
  const cases: [unknown, number, string | null][] = [
    [{ model: BASE, prompt: "x", max_tokens: 0 }, 400, "max_tokens"],
    [{ model: BASE, prompt: "x", max_tokens: 1.5 }, 400, "max_tokens"],
    [{ model: BASE, prompt: "x", temperature: -1 }, 400, "temperature"],
    [{ model: BASE, prompt: "x", temperature: "hot" }, 400, "temperature"],
    [{ model: BASE, prompt: "x", top_p: 0 }, 400, "top_p"],
    [{ model: BASE, prompt: "x", top_k: -2 }, 400, "top_k"],
    [{ model: BASE, prompt: "x", n: 2 }, 400, "n"],
    [{ model: BASE, prompt: "x", stop: ["a", "b", "c", "d", "e"] }, 400, "stop"],
    [{ model: BASE, prompt: "x", bogus: 1 }, 400, null],
    [{ model: BASE }, 400, "prompt"],
    [{ model: BASE, prompt: [1, 2, 100000] }, 400, "prompt"],
    [{ model: "gpt-4", prompt: "x" }, 404, "model"],
    [{ model: BASE, prompt: "x".repeat(5000), max_tokens: 1 }, 400, null], // longer than the context
  ];
  for (const [body, status, param] of cases) {
    const r = await api("/v1/completions", { body });
    const j = await r.json();
    assert.equal(r.status, status, JSON.stringify(body).slice(0, 100) + " -> " + JSON.stringify(j));
    assert.equal(typeof j.error.message, "string");
    assert.equal(typeof j.error.type, "string");
    if (param) assert.equal(j.error.param, param, JSON.stringify(j));
  }
  const chat = await api("/v1/chat/completions", { body: { model: BASE, messages: [{ role: "robot", content: "x" }] } });
  assert.equal(chat.status, 400);
  assert.equal((await chat.json()).error.param, "messages.0.role");
  const big = await api("/v1/completions", { raw: JSON.stringify({ model: BASE, prompt: "x".repeat(2 << 20) }), headers: { "content-type": "application/json" }, method: "POST" });
  assert.equal(big.status, 413);
  assert.equal((await api("/v1/nothing")).status, 404);
});

Deno.test("fuzz: a few hundred malformed bodies give no 5xx and no crash", opts, async () => {
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pick = <T>(a: T[]) => a[Math.floor(rand() * a.length)];
  const junk: unknown[] = [
    null, true, false, 0, -1, 1e308, -1e308, 2 ** 53, 0.5, NaN, "", "x", "\u0000", "\ud800", "😀".repeat(50), [], [1], [null], {}, { a: 1 },
    [[[]]], "stories260K:", "stories260K:alpha", "stories260K:../../x", -0, 3.7, "1", { __proto__: { x: 1 } }, { constructor: 1 },
  ];
  const fields = ["model", "prompt", "messages", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "n", "stream", "stream_options", "logit_bias", "__proto__", "extra"];
  const bodies: string[] = [];
  for (let i = 0; i < 240; i++) {
    const base: Record<string, unknown> = { model: BASE, prompt: "Hi", messages: [{ role: "user", content: "Hi" }], max_tokens: 1, temperature: 0 };
    const n = 1 + Math.floor(rand() * 3);
    for (let k = 0; k < n; k++) base[pick(fields)] = pick(junk);
    if (rand() < 0.3) delete base[pick(fields)];
    let s = JSON.stringify(base);
    const mode = rand();
    if (mode < 0.15) s = s.slice(0, Math.floor(rand() * s.length)); // truncated
    else if (mode < 0.25) s = s.replace(/[:,]/, pick(["", "::", ",,", "}"])); // broken syntax
    else if (mode < 0.3) s = String.fromCharCode(...Array.from({ length: 40 }, () => Math.floor(rand() * 256))); // bytes
    bodies.push(s);
  }
  bodies.push("", "null", "[]", "1", '"str"', "{", "}", '{"model":' + "[".repeat(5000) + "]".repeat(5000) + "}", "\u0000\u0000");
  const routes = ["/v1/completions", "/v1/chat/completions", "/v1/adapters"];
  const statuses = new Map<number, number>();
  for (let i = 0; i < bodies.length; i++) {
    const path = routes[i % 3];
    const r = await api(path, { method: "POST", raw: bodies[i], headers: { "content-type": "application/json" } });
    const text = await r.text();
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    assert.ok(r.status < 500, `${path} ${bodies[i].slice(0, 200)} -> ${r.status} ${text.slice(0, 300)}`);
    assert.doesNotThrow(() => JSON.parse(text), `${path}: JSON answer (got ${text.slice(0, 100)})`);
  }
  assert.ok((statuses.get(400) ?? 0) > 150, `mostly 400s: ${JSON.stringify([...statuses])}`);
  await complete(BASE, PROMPTS[0]);
});

Deno.test("a full queue answers 429 with Retry-After; a per-request timeout stops a generation", opts, async () => {
  const f = await fixture();
  const engine = new ModelEngine(f.model, { modelId: BASE, maxQueue: 1 });
  const app = createApp(engine, { retryAfterSeconds: 2, requestTimeoutMs: 400, logError: () => {} });
  const s = await startServer(app, { port: 0, drain: () => engine.idle() });
  try {
    const send = (maxTokens: number) =>
      fetch(s.url + "/v1/completions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: BASE, prompt: "Once", max_tokens: maxTokens, temperature: 0 }) });
    const rs = await Promise.all([send(16), send(16), send(16), send(16)]);
    const statuses = rs.map((r) => r.status).sort();
    const bodies = await Promise.all(rs.map((r) => r.json()));
    assert.ok(statuses.filter((x) => x === 429).length >= 1, `some 429: ${statuses}`);
    for (let i = 0; i < rs.length; i++) {
      if (rs[i].status === 429) {
        assert.equal(rs[i].headers.get("retry-after"), "2");
        assert.equal(bodies[i].error.type, "rate_limit_error");
      }
    }
    // 1500 tokens cannot finish in 400 ms on this GPU: the generation stops with finish_reason "timeout".
    const t = await (await send(1500)).json();
    assert.equal(t.choices[0].finish_reason, "timeout", JSON.stringify(t));
    assert.ok(t.usage.completion_tokens < 1500);
    assert.equal(engine.stats().running, 0);
  } finally {
    await s.shutdown();
  }
});

Deno.test("GET /metrics: Prometheus text with requests, tokens, latency histogram, adapters, GPU bytes", opts, async () => {
  const r = await api("/metrics");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type") ?? "", /text\/plain/);
  const m = await r.text();
  for (const re of [
    /# TYPE edgepeft_http_requests_total counter/,
    /edgepeft_http_requests_total\{route="\/v1\/completions",method="POST",status="200"\} [1-9]/,
    /edgepeft_http_request_duration_seconds_bucket\{le="\+Inf",route="\/v1\/completions"\} [1-9]/,
    /edgepeft_completion_tokens_total [1-9]/,
    /edgepeft_adapters_loaded [1-9]/,
    /edgepeft_gpu_bytes [1-9]/,
    /edgepeft_queue_rejections_total 0/,
    // Continuous batching, the paged KV cache, the adapter cache, requests per adapter.
    /edgepeft_batch_size \d+/,
    /edgepeft_batch_steps [1-9]/,
    /edgepeft_kv_blocks_total [1-9]/,
    /edgepeft_kv_blocks_used \d+/,
    /edgepeft_generated_tokens_per_second [0-9.e+-]+/,
    /edgepeft_adapter_cache_hits_total [1-9]/,
    /edgepeft_adapter_requests_total\{adapter="alpha"\} [1-9]/,
  ]) assert.match(m, re);
  for (const line of m.trim().split("\n")) assert.match(line, /^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? [-0-9.e+Inf]+)$/, line);
});

Deno.test("graceful shutdown: an in-flight stream completes, then the server stops", opts, async () => {
  const { server: s } = await server();
  const r = await api("/v1/completions", { body: { model: BASE, prompt: "Once", max_tokens: MAX_TOKENS, temperature: 0, stream: true } });
  const reader = r.body!.getReader();
  await reader.read();
  const stopped = s.shutdown();
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  await stopped;
  assert.ok(text.includes("[DONE]"), "the stream finished");
  await assert.rejects(fetch(s.url + "/health"), "no longer listening");
  (await fixture()).model.close();
});
