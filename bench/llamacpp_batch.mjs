/**
 * llama.cpp side of bench/serve.ts (run under Node): node-llama-cpp with its prebuilt CPU binary,
 * `n` requests over `sequences` sequences of one context (llama.cpp batches the sequences of a
 * context into one decode), greedy, `maxTokens` each, base model only. Prints one JSON line:
 * requests/s, generated tokens/s, p50/p99 time to first token and latency (ms).
 *
 *   node bench/llamacpp_batch.mjs <model.gguf> <requests> <sequences> <maxTokens> <prompt ids json> [threads]
 */
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [path, nS, seqS, maxS, promptsJson, thS] = process.argv.slice(2);
const n = Number(nS), sequences = Number(seqS), maxTokens = Number(maxS), threads = Number(thS ?? 2);
const prompts = JSON.parse(promptsJson);
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: LlamaLogLevel.error, maxThreads: threads });
const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
const longest = Math.max(...prompts.map((p) => p.length));
const ctxSize = sequences * Math.max(256, 2 * (longest + maxTokens + 8));
const ctx = await model.createContext({ contextSize: ctxSize, sequences, batchSize: Math.min(512, ctxSize), threads: { ideal: threads, min: threads } });
// One sequence per concurrent request slot, its history cleared between requests.
const free = Array.from({ length: sequences }, () => ctx.getSequence());

async function one(i) {
  // As bench/llamacpp_generate.mjs: the prompt without generating, then greedy tokens from its last token.
  const seq = free.pop();
  const ids = prompts[i % prompts.length];
  const t0 = performance.now();
  let first = 0, tokens = 0;
  if (ids.length > 1) await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, -1));
  for await (const _t of seq.evaluate(ids.slice(-1), { temperature: 0 })) {
    if (tokens++ === 0) first = performance.now() - t0;
    if (tokens >= maxTokens) break;
  }
  const ms = performance.now() - t0;
  await seq.clearHistory();
  free.push(seq);
  return { first, ms, tokens };
}

// Warm up once, then n requests, `sequences` at a time.
await one(0);
const results = [];
let next = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: sequences }, async () => {
  while (next < n) results.push(await one(next++));
}));
const s = (performance.now() - t0) / 1000;
const tokens = results.reduce((a, r) => a + r.tokens, 0);
console.log(JSON.stringify({
  rps: n / s, tps: tokens / s,
  ttft50: pct(results.map((r) => r.first), 50), ttft99: pct(results.map((r) => r.first), 99),
  lat50: pct(results.map((r) => r.ms), 50), lat99: pct(results.map((r) => r.ms), 99),
}));
await ctx.dispose();
await model.dispose();
await llama.dispose();
