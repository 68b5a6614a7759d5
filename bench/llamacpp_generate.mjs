/**
 * llama.cpp side of bench/generate.ts (run under Node): node-llama-cpp with its prebuilt CPU
 * binary (no download, no build). Prints one JSON line with prefill and decode tokens/s.
 *
 *   node bench/llamacpp_generate.mjs <model.gguf> <vocab> <promptTokens> <decodeTokens> <reps> [prefillThreads] [decodeThreads]
 * Prompt ids are the same seeded pseudo-random ids bench/generate.ts feeds our runtime.
 */
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [path, vocabS, nPromptS, nDecodeS, repsS, ptS, dtS] = process.argv.slice(2);
const vocab = Number(vocabS);
const nPrompt = Number(nPromptS), nDecode = Number(nDecodeS), reps = Number(repsS ?? 3);
const prefillThreads = Number(ptS ?? 2), decodeThreads = Number(dtS ?? 1);

/** Same as promptIds in bench/lib/random_llama.ts. */
function promptIds(n, vocab, seed = 1234) {
  let s = seed >>> 0;
  const out = [1];
  while (out.length < n) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(3 + (s >>> 8) % (vocab - 3));
  }
  return out;
}

const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: LlamaLogLevel.error, maxThreads: 2 });
const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
const ids = promptIds(nPrompt, vocab);
const ctxSize = nPrompt + nDecode + 8;

async function prefill(threads) {
  const ctx = await model.createContext({ contextSize: ctxSize, batchSize: Math.max(512, nPrompt), threads: { ideal: threads, min: threads }, sequences: 1 });
  const times = [];
  for (let r = 0; r < reps + 1; r++) {
    const seq = ctx.getSequence();
    const t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(ids);
    const dt = performance.now() - t0;
    if (r > 0) times.push(dt); // first run warms up
    seq.dispose();
  }
  await ctx.dispose();
  return nPrompt / (median(times) / 1000);
}

async function decode(threads) {
  const ctx = await model.createContext({ contextSize: ctxSize, batchSize: Math.max(512, nPrompt), threads: { ideal: threads, min: threads }, sequences: 1 });
  const times = [];
  for (let r = 0; r < reps + 1; r++) {
    const seq = ctx.getSequence();
    await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, -1));
    // Greedy decode of nDecode tokens after the last prompt token; EOS does not stop it.
    let n = 0;
    const t0 = performance.now();
    for await (const _tok of seq.evaluate(ids.slice(-1), { temperature: 0 })) {
      if (++n >= nDecode + 1) break;
    }
    // The first yielded token comes from the last prompt token's pass (one decode pass).
    const dt = performance.now() - t0;
    if (r > 0) times.push(dt);
    seq.dispose();
  }
  await ctx.dispose();
  return (nDecode + 1) / (median(times) / 1000);
}

const out = { prefillThreads, decodeThreads, prefillTokS: await prefill(prefillThreads), decodeTokS: await decode(decodeThreads) };
await model.dispose();
await llama.dispose();
console.log(JSON.stringify(out));
