/**
 * Generation speed (issue #2): prefill tokens/s and decode tokens/s of our WebGPU runtime beside
 * llama.cpp (node-llama-cpp's prebuilt CPU binary, run under Node by bench/llamacpp_generate.mjs)
 * on the same GGUF files and the same prompt ids, in the same run:
 *   - stories260K (dim 64, 5 layers, vocab 512);
 *   - a random llama of ~25M non-embedding parameters (dim 512, 8 layers, 8 heads, ffn 1376,
 *     vocab 32000, untied head), written as an F32 GGUF by bench/lib/random_llama.ts;
 *   - a random qwen2-shaped model of ~25M non-embedding parameters (dim 512, 8 layers, 8 heads /
 *     2 kv heads, ffn 2048, q/k/v biases, NEOX rope, tied head, vocab 32000), GGUF qwen2 written
 *     by bench/lib/random_family.ts;
 *   - the 25M llama with ffn 1280 (every row whole 256-element blocks: 24M non-embedding
 *     parameters) with every matrix (embeddings and head included) in F16, Q8_0, Q4_K and Q6_K.
 *     Ours keeps each in its format on the GPU (F16 with computeDtype "f16": f16 weights and
 *     operands, f32 sums; the block types dequantized on the fly with f32 activations); llama.cpp
 *     runs the same file. "GPU bytes/param" is our allocator's bytes for all base weights over the
 *     parameter count (norms included).
 * Ours goes through the real generation path (generateTokens: prefill in one pass, then one
 * forward + logits readback + host sampling per token; greedy, EOS ignored so every run decodes
 * the same number of tokens). Also reports GPU dispatches / submits / readbacks per decoded token.
 * llama.cpp: prefill with 2 threads, decode with 1 (its 2-thread decode spins on this machine).
 * Each figure is the median of several runs after a warm-up.
 *
 *   node scripts/prepare.mjs && deno run -A bench/generate.ts [--quick] [--no-peer] [--rows=Q4_K,F16]
 * (--rows: only the rows whose name contains one of the words)
 */
import { Gpu, type Tensor } from "../src/gpu/gpu.ts";
import { add } from "../src/kernels/elementwise.ts";
import { generateTokens, type GenerationTokenizer } from "../src/infer/generate.ts";
import { loadModel, type LoadModelOptions, type Model } from "../src/api/model.ts";
import { bitsPerParam, LLAMA_24M_K, LLAMA_25M, type MatrixType, median, parameterCounts, promptIds, randomLlamaGGUF, STORIES260K } from "./lib/random_llama.ts";
import { cachedFamilyGguf, familyParameterCounts, QWEN2_25M } from "./lib/random_family.ts";

const quick = Deno.args.includes("--quick");
const noPeer = Deno.args.includes("--no-peer");
const only = Deno.args.find((a) => a.startsWith("--rows="))?.slice(7).split(",");
const REPS = quick ? 2 : 3;

interface Case {
  name: string;
  path: string;
  vocab: number;
  prompt: number;
  decode: number;
  params: string;
  load?: LoadModelOptions;
  /** The matrices' storage, for the expected bytes per parameter. */
  type: MatrixType;
}
const cases: Case[] = [
  { name: "stories260K", path: STORIES260K, vocab: 512, prompt: 128, decode: quick ? 32 : 128, params: "0.29M", type: "F32" },
];
const paramsLabel = (c: typeof LLAMA_25M) => {
  const { total, nonEmbedding } = parameterCounts(c);
  return `${(nonEmbedding / 1e6).toFixed(1)}M + ${((total - nonEmbedding) / 1e6).toFixed(1)}M emb`;
};
cases.push({
  name: "random llama 25M (d512 L8 ffn1376 V32000)", path: await randomLlamaGGUF(LLAMA_25M), vocab: LLAMA_25M.vocab,
  prompt: 128, decode: quick ? 16 : 64, params: paramsLabel(LLAMA_25M), type: "F32",
});
for (const type of ["F16", "Q8_0", "Q4_K", "Q6_K"] as const) {
  cases.push({
    name: `random llama 24M (d512 L8 ffn1280 V32000) ${type}`, path: await randomLlamaGGUF(LLAMA_24M_K, 1, type), vocab: LLAMA_24M_K.vocab,
    prompt: 128, decode: quick ? 16 : 64, params: paramsLabel(LLAMA_24M_K), type, load: type === "F16" ? { computeDtype: "f16" } : {},
  });
}
{
  const q = QWEN2_25M, { total, nonEmbedding } = familyParameterCounts(q);
  cases.push({
    name: `random qwen2 25M (d${q.dim} L${q.nLayers} kv${q.nKvHeads} ffn${q.hiddenDim} V${q.vocab}, biases, tied)`, path: await cachedFamilyGguf(q), vocab: q.vocab,
    prompt: 128, decode: quick ? 16 : 64, params: `${(nonEmbedding / 1e6).toFixed(1)}M + ${((total - nonEmbedding) / 1e6).toFixed(1)}M emb`, type: "F32",
  });
}

/** Our allocator's bytes for every base weight over the parameter count. */
function gpuBytesPerParam(model: Model): number {
  const p = model.parameterReport();
  const bytes = p.quantizedBytes + p.ggmlBytes + p.f16Bytes + p.f32Bytes;
  return bytes / (p.quantizedParams + p.ggmlParams + p.f16Params + p.f32Params);
}

interface Ours { prefill: number; decode: number; dispatches: number; submits: number; readbacks: number }

async function ours(model: Model, c: Case): Promise<Ours> {
  const ids = promptIds(c.prompt, c.vocab);
  // EOS ignored: every run decodes exactly c.decode tokens through the real generation loop.
  const tok: GenerationTokenizer = { encode: () => [], createStreamDecoder: () => model.tokenizer.createStreamDecoder(), eosId: -1 };
  const run = async (maxTokens: number) => {
    const s0 = { ...model.gpu.stats };
    const g = generateTokens(model.llama, tok, ids, { maxTokens, temperature: 0 });
    let res = await g.next();
    while (!res.done) res = await g.next();
    const s1 = model.gpu.stats;
    if (res.value.completionTokens !== maxTokens) throw new Error(`expected ${maxTokens} tokens, got ${res.value.completionTokens}`);
    return { r: res.value, d: s1.dispatches - s0.dispatches, s: s1.submits - s0.submits, rb: s1.readbacks - s0.readbacks };
  };
  const prefill: number[] = [], decode: number[] = [];
  let per = { dispatches: 0, submits: 0, readbacks: 0 };
  for (let r = 0; r <= REPS; r++) {
    // Prefill alone: one pass over the prompt + one logits readback.
    const p = await run(1);
    if (r > 0) prefill.push(c.prompt / (p.r.prefillMs / 1000));
    // Prefill + c.decode single-token passes; decodeMs covers the decode passes only.
    const d = await run(c.decode + 1);
    if (r > 0) decode.push(c.decode / (d.r.decodeMs / 1000));
    per = { dispatches: (d.d - p.d) / c.decode, submits: (d.s - p.s) / c.decode, readbacks: (d.rb - p.rb) / c.decode };
  }
  return { prefill: median(prefill), decode: median(decode), ...per };
}

/** The fixed cost of the GPU path: one tiny dispatch + submit + readback, and one more tiny dispatch. */
async function floor(gpu: Gpu): Promise<{ roundTripMs: number; perDispatchUs: number }> {
  const a = gpu.upload(new Float32Array(64).fill(1), [64], "f32", "activations");
  const b = gpu.upload(new Float32Array(64).fill(2), [64], "f32", "activations");
  const trip = async (n: number) => {
    const t0 = performance.now();
    const outs: Tensor[] = [];
    for (let i = 0; i < n; i++) outs.push(add(gpu, a, b));
    await gpu.readF32(outs[outs.length - 1]);
    for (const o of outs) o.release();
    return performance.now() - t0;
  };
  await trip(100); // warm-up
  const one: number[] = [], many: number[] = [];
  for (let i = 0; i < 9; i++) {
    one.push(await trip(1));
    many.push(await trip(101));
  }
  a.release(), b.release();
  return { roundTripMs: median(one), perDispatchUs: (median(many) - median(one)) / 100 * 1000 };
}

interface Peer { prefillTokS: number; decodeTokS: number; prefillThreads: number; decodeThreads: number }

async function peer(c: Case): Promise<Peer | { error: string }> {
  const helper = new URL("./llamacpp_generate.mjs", import.meta.url).pathname;
  const cmd = new Deno.Command("node", {
    args: [helper, c.path, String(c.vocab), String(c.prompt), String(c.decode), String(REPS), "2", "1"],
    cwd: new URL("..", import.meta.url).pathname, stdout: "piped", stderr: "piped",
  });
  const out = await cmd.output();
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
  if (!out.success) return { error: new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" ") };
  return JSON.parse(text);
}

const gpu = await Gpu.create();
console.log(`# Generation: ours (WebGPU: ${gpu.info.description}, ${gpu.info.runtime}) vs llama.cpp (node-llama-cpp, prebuilt CPU binary)`);
console.log(`# ${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} logical CPUs (shared with other work: figures are noisy); median of ${REPS} runs after a warm-up\n`);
const rows: string[] = [];
for (const c of cases.filter((c) => !only || only.some((w) => c.name.includes(w)))) {
  const model = await loadModel(c.path, { gpu, contextLength: 512, ...c.load });
  const bpp = gpuBytesPerParam(model);
  const o = await ours(model, c);
  model.close();
  gpu.trim();
  const p = noPeer ? { error: "skipped (--no-peer)" } : await peer(c);
  const fmt = (v: number) => v >= 100 ? v.toFixed(0) : v.toFixed(1);
  const pp = "error" in p ? ["-", "-"] : [fmt(p.prefillTokS), fmt(p.decodeTokS)];
  rows.push(
    `| ${c.name} | ${c.params} | ${c.prompt} / ${c.decode} | ${fmt(o.prefill)} | ${pp[0]} | ${fmt(o.decode)} | ${pp[1]} | ` +
      `${"error" in p ? "-" : (o.decode / p.decodeTokS).toFixed(2) + "x"} | ${o.dispatches.toFixed(0)} / ${o.submits.toFixed(1)} / ${o.readbacks.toFixed(1)} | ` +
      `${bpp.toFixed(4)} (${c.type} ${(bitsPerParam(c.type) / 8).toFixed(4)}) |`,
  );
  if ("error" in p) console.error(`llama.cpp on ${c.name}: ${p.error}`);
}
const f = await floor(gpu);
console.log("| model | params | prompt / decoded tokens | ours prefill tok/s | llama.cpp prefill tok/s (2 threads) | ours decode tok/s | llama.cpp decode tok/s (1 thread) | ours / llama.cpp decode | ours dispatches / submits / readbacks per decoded token | ours GPU bytes/param (the format's) |");
console.log("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const r of rows) console.log(r);
console.log(`\nGPU path floor on this device: one tiny dispatch + submit + 256-byte readback ${f.roundTripMs.toFixed(2)} ms; ` +
  `each further tiny dispatch in the same submit ${f.perDispatchUs.toFixed(0)} µs.`);
gpu.destroy();
