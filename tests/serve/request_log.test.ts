/**
 * The server's per-request log line (createApp's logRequest, what `serve` writes to stderr unless
 * --quiet), over real HTTP with the real model: method, path, status, adapter, tokens, ms, one
 * line per request when it ends (a stream when its last byte went out or the client left), and
 * never the prompt; and --chat-template's engine option.
 */
import assert from "node:assert/strict";
import { createApp } from "../../src/serve/app.ts";
import { ModelEngine } from "../../src/serve/engine.ts";
import { startServer } from "../../src/serve/server.ts";
import { formatRequestLine } from "../../src/serve/request_log.ts";
import { NAMED_CHAT_TEMPLATES } from "../../src/tokenizer/mod.ts";
import { fixture, MAX_TOKENS } from "./fixture.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const SECRET = "Zebra-secret-prompt";

async function waitFor(lines: string[], n: number) {
  for (let i = 0; i < 200 && lines.length < n; i++) await new Promise((r) => setTimeout(r, 25));
}

Deno.test("request log: one line per request with method, path, status, adapter, tokens and ms; never the prompt", opts, async () => {
  const f = await fixture();
  const engine = new ModelEngine(f.model, { modelId: "stories260K" });
  engine.registry.register("alpha", `${f.adaptersDir}/alpha`);
  const lines: string[] = [];
  const server = await startServer(createApp(engine, { logRequest: (l) => lines.push(l), logError: () => {} }), { port: 0 });
  const post = (path: string, body: unknown, signal?: AbortSignal) =>
    fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal });
  try {
    const r = await post("/v1/completions", { model: "stories260K:alpha", prompt: SECRET, max_tokens: MAX_TOKENS, temperature: 0 });
    const usage = (await r.json()).usage;
    await waitFor(lines, 1);
    assert.match(lines[0], new RegExp(`^POST /v1/completions 200 adapter=alpha tokens=${usage.prompt_tokens}\\+${MAX_TOKENS} \\d+ms$`));

    const s = await post("/v1/chat/completions", { model: "stories260K", messages: [{ role: "user", content: SECRET }], max_tokens: 4, temperature: 0, stream: true });
    await s.text();
    await waitFor(lines, 2);
    assert.match(lines[1], /^POST \/v1\/chat\/completions 200 adapter=- tokens=\d+\+4 stream \d+ms$/);

    assert.equal((await fetch(`${server.url}/v1/models?key=${SECRET}`)).status, 200);
    assert.equal((await post("/v1/completions", { model: "nope", prompt: SECRET })).status, 404);
    await waitFor(lines, 4);
    assert.match(lines[2], /^GET \/v1\/models 200 adapter=- tokens=- \d+ms$/);
    assert.match(lines[3], /^POST \/v1\/completions 404 adapter=- tokens=- \d+ms$/);

    // a client that leaves mid-stream: logged when the server notices
    const ctl = new AbortController();
    const long = await post("/v1/completions", { model: "stories260K", prompt: SECRET, max_tokens: 200, temperature: 0, stream: true }, ctl.signal);
    const reader = long.body!.getReader();
    await reader.read();
    ctl.abort();
    await reader.cancel().catch(() => {});
    await waitFor(lines, 5);
    assert.match(lines[4], /^POST \/v1\/completions 499\(client closed\) adapter=- tokens=- stream \d+ms$/);
    assert.ok(lines.every((l) => !l.includes(SECRET)), "the prompt is never logged");
    assert.equal(lines.length, 5);
  } finally {
    await engine.idle();
    await server.shutdown();
  }
});

Deno.test("formatRequestLine", () => {
  assert.equal(
    formatRequestLine({ method: "POST", path: "/v1/completions", status: 200, ms: 411.6, stream: true, adapter: "a", promptTokens: 5, completionTokens: 32 }),
    "POST /v1/completions 200 adapter=a tokens=5+32 stream 412ms",
  );
});

Deno.test("ModelEngine chatTemplate: chat requests render with it instead of the fallback", opts, async () => {
  const f = await fixture();
  const messages = [{ role: "user" as const, content: "Hi" }];
  const tok = f.model.tokenizer;
  const plain = new ModelEngine(f.model, { modelId: "m" });
  const chatml = new ModelEngine(f.model, { modelId: "m", chatTemplate: NAMED_CHAT_TEMPLATES.chatml });
  assert.deepEqual(chatml.encodeChat(messages), tok.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", { addSpecial: false, parseSpecial: true }));
  assert.notDeepEqual(plain.encodeChat(messages), chatml.encodeChat(messages));
});
