/**
 * Bounded load test of the adapter server on 127.0.0.1 (a fixed number of requests; it stops by
 * itself): the one-at-a-time engine beside the continuous-batching engine in the same run, with
 * the base model only and with 1, 8 and 32 LoRA adapters in the mix (each request names one, in
 * turn), plus 8 concurrent users on the base model. Greedy streaming completions; figures:
 * requests/s, generated tokens/s, p50/p99 time to first token and request latency. The anchor
 * row is llama.cpp's own batched serving of the same model (node-llama-cpp, several sequences in
 * one context, base only, prebuilt CPU binary under Node: `llamacpp_batch.mjs`).
 *
 *   deno run -A bench/serve.ts [--quick] [--no-peer] [--m25] [--model path.gguf] [--requests 32] [--max-tokens 32]
 * --quick: 16 requests of 16 tokens; --m25: also the random 25M llama (bench/lib/random_llama.ts).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadModel, type Model } from "../src/api/model.ts";
import { createApp } from "../src/serve/app.ts";
import { ModelEngine } from "../src/serve/engine.ts";
import { startServer } from "../src/serve/server.ts";
import { LLAMA_25M, randomLlamaGGUF, STORIES260K } from "./lib/random_llama.ts";

const { values: v } = parseArgs({
  options: {
    model: { type: "string" },
    requests: { type: "string" },
    "max-tokens": { type: "string" },
    quick: { type: "boolean", default: false },
    "no-peer": { type: "boolean", default: false },
    m25: { type: "boolean", default: false },
  },
});
const N = Number(v.requests ?? (v.quick ? 16 : 32)), T = Number(v["max-tokens"] ?? (v.quick ? 16 : 32));
const PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went to the park", "One day, a big bird", "She was happy because"];

interface Row {
  label: string;
  rps: number;
  tps: number;
  ttft50: number;
  ttft99: number;
  lat50: number;
  lat99: number;
}
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

/** One streamed greedy completion: time to the first text chunk, total time, tokens. */
async function one(url: string, model: string, prompt: string): Promise<{ first: number; ms: number; tokens: number }> {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, prompt, max_tokens: T, temperature: 0, stream: true, stream_options: { include_usage: true } }),
  });
  if (r.status !== 200) throw new Error(`${r.status} ${await r.text()}`);
  const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
  let first = 0, buf = "", tokens = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (!first && value.includes('"text":"') && !value.includes('"text":""')) first = performance.now() - t0;
    buf += value;
  }
  const usage = /"completion_tokens":(\d+)/.exec(buf);
  if (usage) tokens = Number(usage[1]);
  return { first: first || performance.now() - t0, ms: performance.now() - t0, tokens };
}

async function load(url: string, mix: string[], concurrency: number, label: string): Promise<Row> {
  for (const m of new Set(mix)) await one(url, m, "Hi"); // adapters loaded, pipelines compiled
  const res: { first: number; ms: number; tokens: number }[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < N) {
      const i = next++;
      res.push(await one(url, mix[i % mix.length], PROMPTS[i % PROMPTS.length]));
    }
  }));
  const s = (performance.now() - t0) / 1000;
  return {
    label,
    rps: N / s,
    tps: res.reduce((a, r) => a + r.tokens, 0) / s,
    ttft50: pct(res.map((r) => r.first), 50),
    ttft99: pct(res.map((r) => r.first), 99),
    lat50: pct(res.map((r) => r.ms), 50),
    lat99: pct(res.map((r) => r.ms), 99),
  };
}

async function benchModel(path: string, name: string): Promise<Row[]> {
  const model: Model = await loadModel(path);
  const dir = await mkdtemp(join(tmpdir(), "bench-serve-"));
  const names = Array.from({ length: 32 }, (_, i) => `a${i}`);
  for (const [i, n] of names.entries()) {
    model.addAdapter(n, { r: [4, 8, 16][i % 3], lora_alpha: 16, target_modules: "all-linear", init_lora_weights: false }, 100 + i);
    await model.saveAdapter(n, join(dir, n));
    model.deleteAdapter(n);
  }
  const rows: Row[] = [];
  const mixes: [string, string[], number][] = [
    ["base only, 8 users", ["base"], 8],
    ["base only", ["base"], N],
    ["1 adapter", ["base:a0"], N],
    ["8 adapters", names.slice(0, 8).map((n) => `base:${n}`), N],
    ["32 adapters", names.map((n) => `base:${n}`), N],
  ];
  for (const batching of ["off", "continuous"] as const) {
    const engine = new ModelEngine(model, { modelId: "base", maxQueue: N + 8, batching, maxBatch: 32 });
    for (const n of names) engine.registry.register(n, join(dir, n));
    const server = await startServer(createApp(engine, { logError: () => {} }), { port: 0, hostname: "127.0.0.1", drain: () => engine.idle() });
    for (const [label, mix, c] of mixes) {
      const r = await load(server.url, mix, c, `${name}: ${batching === "off" ? "one at a time" : "batched"}, ${label}`);
      rows.push(r);
      console.error(`[bench/serve] ${r.label}: ${r.tps.toFixed(1)} tok/s`);
    }
    await server.shutdown();
    engine.close();
    // The next engine loads them from disk again (a fresh start for both).
    for (const n of names) if (model.adapters.has(n)) model.deleteAdapter(n);
  }
  model.close();
  await rm(dir, { recursive: true, force: true });
  if (!v["no-peer"]) rows.push(await peer(path, name, model));
  return rows;
}

async function peer(path: string, name: string, model: Model): Promise<Row> {
  const helper = new URL("./llamacpp_batch.mjs", import.meta.url).pathname;
  const prompts = PROMPTS.map((p) => model.encodePrompt(p));
  const out = await new Deno.Command("node", { args: [helper, path, String(N), "32", String(T), JSON.stringify(prompts), "2"], stdout: "piped", stderr: "piped" }).output();
  const label = `${name}: llama.cpp batched (32 sequences in one context), base only`;
  if (!out.success) {
    console.error(`[bench/serve] llama.cpp failed: ${new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" ")}`);
    return { label: label + " (failed)", rps: NaN, tps: NaN, ttft50: NaN, ttft99: NaN, lat50: NaN, lat99: NaN };
  }
  return { label, ...JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!) };
}

const cases: [string, string][] = [[v.model ?? STORIES260K, v.model ? "model" : "stories260K"]];
if (v.m25) cases.push([await randomLlamaGGUF(LLAMA_25M), "25M"]);
const rows: Row[] = [];
for (const [path, name] of cases) rows.push(...await benchModel(path, name));

console.log(`\nbench/serve.ts — ${N} requests (32 at a time unless said), max_tokens ${T}, greedy, streamed over loopback HTTP; LoRA adapters r 4/8/16 on all linears`);
const head = ["engine, mix", "req/s", "gen tok/s", "TTFT p50 ms", "TTFT p99 ms", "latency p50 ms", "latency p99 ms"];
const body = rows.map((r) => [r.label, r.rps.toFixed(2), r.tps.toFixed(1), r.ttft50.toFixed(0), r.ttft99.toFixed(0), r.lat50.toFixed(0), r.lat99.toFixed(0)]);
const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
const line = (r: string[]) => "| " + r.map((c, i) => (i ? c.padStart(w[i]) : c.padEnd(w[i]))).join(" | ") + " |";
console.log(line(head));
console.log("|" + w.map((x) => "-".repeat(x + 2)).join("|") + "|");
for (const r of body) console.log(line(r));
// The targets, computed from the rows above.
for (const [, name] of cases) {
  const get = (s: string) => rows.find((r) => r.label === `${name}: ${s}`)?.tps ?? NaN;
  const base = get("batched, base only");
  console.log(
    `${name}: batched / one-at-a-time with 8 users: ${(get("batched, base only, 8 users") / get("one at a time, base only, 8 users")).toFixed(1)}x; ` +
      `8 adapters ${(100 * get("batched, 8 adapters") / base).toFixed(0)}% and 32 adapters ${(100 * get("batched, 32 adapters") / base).toFixed(0)}% of base-only batched throughput`,
  );
}
