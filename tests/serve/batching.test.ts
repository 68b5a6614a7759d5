/**
 * Continuous batching over real HTTP with the official `openai` SDK as the client: 32 concurrent
 * greedy requests over the base model and 8 adapters (LoRA of ranks 1-16, (IA)³, prefix tuning,
 * and LN tuning, which runs as its own sub-batch) return exactly the texts each request gives
 * alone, streamed or not, in far fewer steps than tokens (the requests really shared steps); ten
 * clients that disconnect mid-stream give all their KV cache blocks back.
 */
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { loadModel } from "../../src/api/model.ts";
import { createApp } from "../../src/serve/app.ts";
import { ModelEngine } from "../../src/serve/engine.ts";
import { startServer } from "../../src/serve/server.ts";
import { loraBs, randn, STORIES, testGpu } from "../helpers.ts";

const FIXTURES = new URL("../fixtures/methods/", import.meta.url).pathname;
const PROMPTS = ["Once upon a time", "The cat", "Lily and Tom went", "One day, a big dog", "She was happy", "Tim"];
const N = 12;
const opts = { sanitizeOps: false, sanitizeResources: false };

const setup = (async () => {
  const m = await loadModel(STORIES, { gpu: await testGpu() });
  const dir = await mkdtemp(join(tmpdir(), "serve-batching-"));
  const loras: [string, number, string[]][] = [
    ["r1", 1, ["q_proj"]],
    ["r2", 2, ["v_proj", "o_proj"]],
    ["r4", 4, ["q_proj", "k_proj", "v_proj"]],
    ["r8", 8, ["gate_proj", "up_proj", "down_proj"]],
    ["r16", 16, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]],
  ];
  for (const [i, [name, r, targets]] of loras.entries()) {
    const a = m.addAdapter(name, { r, lora_alpha: 2 * r, target_modules: targets }, 40 + i);
    for (const B of loraBs(a)) m.gpu.write(B, randn(B.size, 50 + i, 0.5));
    await m.saveAdapter(name, join(dir, name));
    m.deleteAdapter(name);
  }
  const names = [...loras.map((l) => l[0]), "ia3", "prefix_tuning", "ln_tuning"];
  const dirOf = (n: string) => ["ia3", "prefix_tuning", "ln_tuning"].includes(n) ? `${FIXTURES}${n}` : join(dir, n);
  const expected: Record<string, Record<string, string>> = { base: {} };
  for (const p of PROMPTS) expected.base[p] = await m.complete(p, { maxTokens: N, temperature: 0 });
  for (const n of names) {
    await m.loadAdapter(n, dirOf(n));
    expected[n] = {};
    for (const p of PROMPTS) expected[n][p] = await m.complete(p, { maxTokens: N, temperature: 0, adapter: n });
    m.deleteAdapter(n);
  }
  m.llama.dropCache();
  const engine = new ModelEngine(m, { modelId: "stories260K", maxQueue: 64, maxBatch: 32, kvBlockSize: 8 });
  for (const n of names) engine.registry.register(n, dirOf(n));
  const server = await startServer(createApp(engine, { logError: () => {} }), { port: 0, drain: () => engine.idle() });
  const client = new OpenAI({ apiKey: "unused", baseURL: `${server.url}/v1`, maxRetries: 0 });
  return { m, engine, server, client, names, expected };
})();

const jobs = async () => {
  const { names } = await setup;
  const models = ["base", ...names];
  return Array.from({ length: 32 }, (_, i) => ({ m: models[i % models.length], p: PROMPTS[(i * 5) % PROMPTS.length] }));
};
const modelId = (m: string) => m === "base" ? "stories260K" : `stories260K:${m}`;

Deno.test("32 concurrent greedy requests over base + 8 adapters equal each request alone, in shared steps", opts, async () => {
  const { engine, client, expected } = await setup;
  for (const n of Object.keys(expected)) {
    if (n !== "base") assert.ok(PROMPTS.some((p) => expected[n][p] !== expected.base[p]), `${n} changes the text (else this test could not fail)`);
  }
  const list = await jobs();
  const steps0 = engine.batcher!.steps;
  const out = await Promise.all(list.map((j) => client.completions.create({ model: modelId(j.m), prompt: j.p, max_tokens: N, temperature: 0 })));
  out.forEach((r, i) => assert.equal(r.choices[0].text, expected[list[i].m][list[i].p], `${list[i].m} "${list[i].p}"`));
  const tokens = out.reduce((n, r) => n + r.usage!.completion_tokens, 0);
  const steps = engine.batcher!.steps - steps0;
  assert.ok(steps * 4 < tokens, `${tokens} tokens in ${steps} steps: the requests were batched`);
  assert.equal(engine.batcher!.pool.blocksUsed, 0, "every block back in the pool");
});

Deno.test("the same 32 requests streamed give the same texts", opts, async () => {
  const { engine, client, expected } = await setup;
  const list = await jobs();
  const texts = await Promise.all(list.map(async (j) => {
    const stream = await client.completions.create({ model: modelId(j.m), prompt: j.p, max_tokens: N, temperature: 0, stream: true });
    let s = "";
    for await (const chunk of stream) s += chunk.choices[0]?.text ?? "";
    return s;
  }));
  texts.forEach((t, i) => assert.equal(t, expected[list[i].m][list[i].p], `${list[i].m} "${list[i].p}" streamed`));
  await engine.idle();
  assert.equal(engine.batcher!.pool.blocksUsed, 0);
});

Deno.test("10 clients disconnecting mid-stream free their KV blocks", opts, async () => {
  const { engine, client, names } = await setup;
  const ctls = Array.from({ length: 10 }, () => new AbortController());
  const started = await Promise.all(ctls.map(async (ctl, i) => {
    const stream = await client.completions.create(
      { model: modelId(["base", ...names][i % 9]), prompt: PROMPTS[i % PROMPTS.length], max_tokens: 400, temperature: 0, stream: true },
      { signal: ctl.signal },
    );
    const it = stream[Symbol.asyncIterator]();
    await it.next(); // generation is running
    return it;
  }));
  const used = engine.batcher!.pool.blocksUsed;
  assert.ok(used > 0, "the running requests hold blocks");
  for (const [i, ctl] of ctls.entries()) {
    ctl.abort();
    await started[i].return?.(undefined).catch(() => {});
  }
  const t0 = Date.now();
  while ((engine.batcher!.pool.blocksUsed > 0 || engine.stats().running > 0) && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 20));
  assert.equal(engine.batcher!.pool.blocksUsed, 0, `blocks back in the pool (held ${used} while running)`);
  assert.equal(engine.stats().running, 0);
  // The server keeps serving.
  const r = await client.completions.create({ model: "stories260K:r2", prompt: PROMPTS[0], max_tokens: N, temperature: 0 });
  assert.equal(r.choices[0].text, (await setup).expected.r2[PROMPTS[0]]);
});

Deno.test("host sampling every step (gpuChunk 1) gives the same texts as the GPU-sampled chunks", opts, async () => {
  const { m, expected, names } = await setup;
  const engine = new ModelEngine(m, { modelId: "stories260K", gpuChunk: 1, kvBlockSize: 4 });
  // Adapters still resident from the other engine are adopted as they are; the rest load from disk.
  for (const n of names) if (!engine.hasAdapter(n)) engine.registry.register(n, (await setup).engine.registry.info(n).dir!);
  try {
    const out = await Promise.all(["base", ...names].map(async (n, i) => {
      const p = PROMPTS[i % PROMPTS.length];
      const gen = await engine.start({ ids: m.encodePrompt(p), adapter: n === "base" ? undefined : n, maxTokens: N, temperature: 0, topK: 0, topP: 1, seed: 1, stop: [] });
      let text = "";
      for (let r = await gen.pieces.next(); !r.done; r = await gen.pieces.next()) text += r.value.text;
      return [text, expected[n][p]];
    }));
    for (const [got, want] of out) assert.equal(got, want);
    assert.equal(engine.batcher!.pool.blocksUsed, 0);
  } finally {
    await engine.idle();
    engine.close();
  }
});

Deno.test("batching: shut down", opts, async () => {
  const { server, engine, m } = await setup;
  await server.shutdown();
  engine.close();
  m.close();
});
