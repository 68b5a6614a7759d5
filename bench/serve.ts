/**
 * Bounded load test of the adapter server on 127.0.0.1 (a fixed number of requests; it stops by
 * itself): requests/s, p50/p99 latency and generated tokens/s with the base only and with 1, 2
 * and 8 adapters in the mix, and the adapter switch cost (the same request alternating adapters
 * A and B) against the same request on the base model only.
 *
 *   deno run -A bench/serve.ts [--model path.gguf] [--requests 48] [--concurrency 8] [--max-tokens 16]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadModel } from "../src/api/model.ts";
import { createApp } from "../src/serve/app.ts";
import { ModelEngine } from "../src/serve/engine.ts";
import { startServer } from "../src/serve/server.ts";

const { values: v } = parseArgs({
  options: {
    model: { type: "string", default: new URL("../../shared/models/stories260K/stories260K.gguf", import.meta.url).pathname },
    requests: { type: "string", default: "48" },
    concurrency: { type: "string", default: "8" },
    "max-tokens": { type: "string", default: "16" },
    switches: { type: "string", default: "20" },
  },
});
const N = Number(v.requests), C = Number(v.concurrency), T = Number(v["max-tokens"]), S = Number(v.switches);

const model = await loadModel(v.model!);
const dir = await mkdtemp(join(tmpdir(), "bench-serve-"));
const names = Array.from({ length: 8 }, (_, i) => `a${i}`);
for (const [i, n] of names.entries()) {
  model.addAdapter(n, { r: 8, lora_alpha: 16, target_modules: "all-linear", init_lora_weights: false }, 100 + i);
  await model.saveAdapter(n, join(dir, n));
  model.deleteAdapter(n);
}
const engine = new ModelEngine(model, { modelId: "base", maxQueue: N + 8 });
for (const n of names) engine.registry.register(n, join(dir, n));
const server = await startServer(createApp(engine, { logError: () => {} }), { port: 0, hostname: "127.0.0.1", drain: () => engine.idle() });

async function one(modelName: string, prompt: string): Promise<{ ms: number; tokens: number }> {
  const t0 = performance.now();
  const r = await fetch(`${server.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: modelName, prompt, max_tokens: T, temperature: 0 }),
  });
  const j = await r.json();
  if (r.status !== 200) throw new Error(`${r.status} ${JSON.stringify(j)}`);
  return { ms: performance.now() - t0, tokens: j.usage.completion_tokens };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function load(mix: string[]) {
  // Warm: load every adapter of the mix once (first-use loading is measured separately below).
  for (const m of mix) await one(m, "Hi");
  const lat: number[] = [];
  let tokens = 0, next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: C }, async () => {
    while (next < N) {
      const i = next++;
      const r = await one(mix[i % mix.length], `Once upon a time ${i}`);
      lat.push(r.ms);
      tokens += r.tokens;
    }
  }));
  const s = (performance.now() - t0) / 1000;
  return { rps: N / s, p50: pct(lat, 50), p99: pct(lat, 99), tps: tokens / s };
}

const rows: string[][] = [];
const mixes: [string, string[]][] = [
  ["base only", ["base"]],
  ["1 adapter", ["base:a0"]],
  ["2 adapters", ["base:a0", "base:a1"]],
  ["8 adapters", names.map((n) => `base:${n}`)],
];
for (const [label, mix] of mixes) {
  const r = await load(mix);
  rows.push([label, r.rps.toFixed(2), r.p50.toFixed(1), r.p99.toFixed(1), r.tps.toFixed(1)]);
}

// Switch cost: the same request sequentially, alternating adapters vs base only.
async function seq(models: string[]) {
  const xs: number[] = [];
  for (let i = 0; i < S; i++) xs.push((await one(models[i % models.length], "Once upon a time")).ms);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
const baseMs = await seq(["base"]);
const sameMs = await seq(["base:a0"]);
const switchMs = await seq(["base:a0", "base:a1"]);
// First use of an adapter (load from disk + upload), after deleting it from the GPU.
engine.deleteAdapter("a7");
engine.registry.register("a7", join(dir, "a7"));
const firstUse = (await one("base:a7", "Once upon a time")).ms;

const info = model.gpu.info;
console.log(`\nbench/serve.ts — ${v.model} on ${info.description} (${info.runtime}); ${N} requests, concurrency ${C}, max_tokens ${T}, greedy, loopback HTTP`);
const table = (head: string[], body: string[][]) => {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (r: string[]) => "| " + r.map((c, i) => c.padStart(w[i])).join(" | ") + " |";
  console.log(line(head));
  console.log("|" + w.map((x) => "-".repeat(x + 2)).join("|") + "|");
  for (const r of body) console.log(line(r));
};
table(["mix", "req/s", "p50 ms", "p99 ms", "gen tok/s"], rows);
console.log("");
table(["sequential, same request", "mean ms"], [
  ["base only", baseMs.toFixed(1)],
  ["adapter A every time", sameMs.toFixed(1)],
  ["alternating A, B (switch)", switchMs.toFixed(1)],
  ["switch cost vs base", (switchMs - baseMs).toFixed(1)],
  ["switch cost vs same adapter", (switchMs - sameMs).toFixed(1)],
  ["first use (load from disk)", firstUse.toFixed(1)],
]);
await server.shutdown();
model.close();
await rm(dir, { recursive: true, force: true });
