/**
 * Two server processes sharing an adapter store on a real S3-compatible server (s3rver, started
 * here on 127.0.0.1: a maintained implementation of the S3 REST API that checks SigV4 signatures,
 * so aws4fetch's signing is exercised for real), driven by the `openai` SDK where OpenAI has the
 * endpoint: upload through replica A, generate through replica B; a corrupt object in the store
 * is refused with a clear error and never served; the store going down gives 503 on /ready and a
 * clear error for adapters B never fetched, while the adapter B holds keeps serving.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { AwsClient } from "aws4fetch";
import { loadModel } from "../../src/api/model.ts";
import { S3AdapterStore } from "../../src/serve/adapter_store.ts";
import { loraBs, randn, STORIES, testGpu } from "../helpers.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const CREDS = { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_REGION: "us-east-1" };
const N = 8;
const PROMPT = "Once upon a time";

async function readLine(stream: ReadableStream<Uint8Array>, pattern: RegExp, what: string, ms = 120_000): Promise<{ match: RegExpMatchArray; rest: Promise<void> }> {
  const reader = stream.pipeThrough(new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>).getReader();
  let buf = "";
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    const m = buf.match(pattern);
    if (m) {
      // Keep draining so the child never blocks on a full pipe.
      const rest = (async () => {
        while (!(await reader.read()).done) { /* drain */ }
      })().catch(() => {});
      return { match: m, rest };
    }
  }
  throw new Error(`${what}: no line matching ${pattern} in:\n${buf}`);
}

/** A child process; the stream `listen` reads is piped, the other one inherited (its lines show in the test log). */
function spawn(args: string[], listen: "stdout" | "stderr", env: Record<string, string> = {}) {
  return new Deno.Command(args[0], {
    args: args.slice(1), cwd: ROOT, env: { ...env, NO_COLOR: "1" }, stdin: "piped",
    stdout: listen === "stdout" ? "piped" : "inherit", stderr: listen === "stderr" ? "piped" : "inherit",
  }).spawn();
}

Deno.test("two replicas share an S3-compatible adapter store: upload through one, serve through the other; corrupt objects refused; store down", { sanitizeOps: false, sanitizeResources: false }, async () => {
  const work = await mkdtemp(join(tmpdir(), "store-test-"));
  const children: Deno.ChildProcess[] = [];
  try {
    // Adapters and the text each must give (in this process, one at a time).
    const m = await loadModel(STORIES, { gpu: await testGpu() });
    const expected: Record<string, string> = {};
    for (const [i, name] of ["up1", "other", "bad"].entries()) {
      const a = m.addAdapter(name, { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj", "o_proj"] }, 70 + i);
      for (const B of loraBs(a)) m.gpu.write(B, randn(B.size, 80 + i, 0.4));
      expected[name] = await m.complete(PROMPT, { adapter: name, maxTokens: N, temperature: 0 });
      await m.saveAdapter(name, join(work, name));
      m.deleteAdapter(name);
    }
    const base = await m.complete(PROMPT, { maxTokens: N, temperature: 0 });
    m.close();
    assert.notEqual(expected.up1, base);

    const s3 = spawn(["node", "tests/serve/s3_server.mjs", join(work, "s3")], "stdout");
    children.push(s3);
    const port = Number((await readLine(s3.stdout, /\{"port":(\d+)\}/, "s3rver", 30_000)).match[1]);
    const env = { ...CREDS, AWS_ENDPOINT_URL: `http://127.0.0.1:${port}` };
    const store = new S3AdapterStore({ url: "s3://adapters/team", cacheDir: join(work, "cache-test"), env });
    // Published before the replicas start: "other" (good), "bad" (its weights then overwritten).
    await store.put("other", join(work, "other"));
    await store.put("bad", join(work, "bad"));
    const raw = new AwsClient({ accessKeyId: "S3RVER", secretAccessKey: "S3RVER", region: "us-east-1", service: "s3" });
    const weights = new Uint8Array(await readFile(join(work, "bad", "adapter_model.safetensors")));
    weights[weights.length - 3] ^= 0x40; // one flipped bit in a value
    assert.equal((await raw.fetch(`http://127.0.0.1:${port}/adapters/team/bad/adapter_model.safetensors`, { method: "PUT", body: weights })).status, 200);
    // A half-published adapter (files, no manifest) is invisible.
    assert.equal((await raw.fetch(`http://127.0.0.1:${port}/adapters/team/half/adapter_config.json`, { method: "PUT", body: "{}" })).status, 200);
    assert.deepEqual(await store.list(), ["bad", "other"]);

    const replica = async (name: string) => {
      const p = spawn([
        "./node_modules/.bin/deno", "run", "-A", "src/cli/bin.ts", "serve", "--model", STORIES, "--port", "0", "--model-id", "stories260K",
        "--adapter-store", "s3://adapters/team", "--store-cache", join(work, `cache-${name}`),
      ], "stderr", env);
      children.push(p);
      const url = (await readLine(p.stderr, /listening on (http:\/\/[^\s]+)/, `replica ${name}`)).match[1];
      return { url, client: new OpenAI({ apiKey: "unused", baseURL: `${url}/v1`, maxRetries: 0 }) };
    };
    const [A, B] = await Promise.all([replica("A"), replica("B")]);
    for (const r of [A, B]) {
      const ready = await fetch(`${r.url}/ready`);
      assert.equal(ready.status, 200, await ready.text());
    }

    // Upload through A (multipart, the adapters API), use through B at once.
    const form = new FormData();
    form.set("id", "up1");
    form.set("adapter_config.json", new Blob([await readFile(join(work, "up1", "adapter_config.json"))]), "adapter_config.json");
    form.set("adapter_model.safetensors", new Blob([await readFile(join(work, "up1", "adapter_model.safetensors"))]), "adapter_model.safetensors");
    const up = await fetch(`${A.url}/v1/adapters`, { method: "POST", body: form });
    assert.equal(up.status, 201, await up.clone().text());
    const viaB = await B.client.completions.create({ model: "stories260K:up1", prompt: PROMPT, max_tokens: N, temperature: 0 });
    assert.equal(viaB.choices[0].text, expected.up1);
    const models = await B.client.models.list();
    assert.deepEqual(models.data.map((x) => x.id).sort(), ["stories260K", "stories260K:bad", "stories260K:other", "stories260K:up1"]);
    const chat = await B.client.chat.completions.create({ model: "stories260K:up1", messages: [{ role: "user", content: "Hi" }], max_tokens: 2, temperature: 0 });
    assert.equal(chat.choices[0].message.role, "assistant");
    // Same id again through B: the store already has it.
    assert.equal((await fetch(`${B.url}/v1/adapters`, { method: "POST", body: form })).status, 409);

    // The corrupt object: a clear error through the SDK, and never served.
    for (let i = 0; i < 2; i++) {
      await assert.rejects(
        () => B.client.completions.create({ model: "stories260K:bad", prompt: PROMPT, max_tokens: N, temperature: 0 }),
        (e) => e instanceof OpenAI.APIError && e.status === 502 && /bad\/adapter_model\.safetensors does not match its manifest/.test(e.message),
      );
    }

    // The store goes down.
    s3.stdin.close();
    await s3.status;
    const ready = await fetch(`${B.url}/ready`);
    assert.equal(ready.status, 503);
    assert.match((await ready.json()).detail, /cannot be reached/);
    await assert.rejects(
      () => B.client.completions.create({ model: "stories260K:other", prompt: PROMPT, max_tokens: N, temperature: 0 }),
      (e) => e instanceof OpenAI.APIError && e.status === 503 && /adapter store cannot be reached/.test(e.message),
    );
    // An unknown id cannot be looked up either: 503, not a misleading 404.
    await assert.rejects(() => B.client.completions.create({ model: "stories260K:nope", prompt: PROMPT, max_tokens: 1 }), (e) => e instanceof OpenAI.APIError && e.status === 503);
    const cached = await B.client.completions.create({ model: "stories260K:up1", prompt: PROMPT, max_tokens: N, temperature: 0 });
    assert.equal(cached.choices[0].text, expected.up1, "the adapter B holds keeps serving");
    const baseText = await B.client.completions.create({ model: "stories260K", prompt: PROMPT, max_tokens: N, temperature: 0 });
    assert.equal(baseText.choices[0].text, base);
  } finally {
    for (const c of children) {
      try {
        c.kill("SIGTERM");
      } catch { /* already gone */ }
      await c.status.catch(() => {});
    }
    await rm(work, { recursive: true, force: true });
  }
});
