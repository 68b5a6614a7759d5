/**
 * PEFT methods side by side (issue #11): for each method on the same model and data, training
 * tokens/s (forward + backward + clip + AdamW, median step after a warm-up step), peak GPU bytes
 * our allocator held, trainable parameters, and decode tokens/s of the unmerged adapter
 * relative to the base model (greedy, 32 tokens, EOS ignored), all in one run.
 *
 * Peers in the same run: the "frozen" row trains only the first RMSNorm's weight (64 values on
 * stories260K): the backward then runs through every layer of the frozen model, so it is the cost
 * of forward + backward with (almost) nothing trainable, the floor the methods are measured
 * against; the base model's decode speed is the 1.00x of the last column.
 *
 *   node scripts/prepare.mjs && deno run -A bench/methods.ts [--quick] [--model 25m]
 */
import { Gpu } from "../src/gpu/gpu.ts";
import { loadModel, type Model } from "../src/api/model.ts";
import { generateTokens, type GenerationTokenizer } from "../src/infer/generate.ts";
import { train } from "../src/train/trainer.ts";
import { LLAMA_25M, median, randomLlamaGGUF, SHARED, STORIES260K } from "./lib/random_llama.ts";

const quick = Deno.args.includes("--quick");
const big = Deno.args.includes("25m") || Deno.args.includes("--model=25m");
const DATA = `${SHARED}data/tinyshakespeare.txt`;
const path = big ? await randomLlamaGGUF(LLAMA_25M) : STORIES260K;
const seq = big ? 128 : 128, batch = big ? 1 : 8, steps = quick ? 3 : 6;
const lastLayer = big ? LLAMA_25M.nLayers - 1 : 4;

const METHODS: [string, Record<string, unknown>, number][] = [
  ["frozen fwd+bwd (first norm only)", { peft_type: "LN_TUNING", target_modules: "model\\.layers\\.0\\.input_layernorm" }, 1e-3],
  ["LoRA r8 q,v", { r: 8, lora_alpha: 16, target_modules: ["q_proj", "v_proj"] }, 2e-3],
  ["LoRA r8 all-linear", { r: 8, lora_alpha: 16, target_modules: "all-linear" }, 2e-3],
  ["DoRA r8 all-linear", { r: 8, lora_alpha: 16, target_modules: "all-linear", use_dora: true }, 2e-3],
  ["(IA)³ k,v,down", { peft_type: "IA3" }, 1e-2],
  ["BitFit all-linear", { peft_type: "BITFIT" }, 1e-2],
  ["LN tuning", { peft_type: "LN_TUNING" }, 1e-2],
  [`partial: layer ${lastLayer}`, { peft_type: "PARTIAL", target_modules: "all", layers_to_transform: [lastLayer] }, 1e-4],
];

const MiB = (b: number) => (b / 2 ** 20).toFixed(2);

async function decodeTokS(model: Model, adapter?: string): Promise<number> {
  const ids = model.encodePrompt("Once upon a time, there was a");
  const tok: GenerationTokenizer = { ...model.tokenizer, eosId: -1, encode: model.tokenizer.encode.bind(model.tokenizer), createStreamDecoder: model.tokenizer.createStreamDecoder.bind(model.tokenizer) };
  const runs: number[] = [];
  for (let r = 0; r < 3; r++) {
    const g = generateTokens(model.llama, tok, ids, { maxTokens: 32, temperature: 0 }, model.peft.hooksFor(adapter));
    let res;
    while (!(res = await g.next()).done);
    if (r > 0) runs.push(31 / (res.value.decodeMs / 1000));
  }
  return median(runs);
}

const gpu = await Gpu.create();
console.log(`# PEFT methods on ${big ? "the random 25M llama" : "stories260K"}: ${batch} x ${seq} tokens a step, ${steps} steps; ${gpu.info.description} (${gpu.info.runtime})`);
if (/llvmpipe|lavapipe|swiftshader|software/i.test(gpu.info.description)) console.log("# NOTE: a SOFTWARE GPU on the CPU cores: relative figures only");
const base = await loadModel(path, { gpu, contextLength: 512 });
const baseDecode = await decodeTokS(base);
base.close();
console.log("\n| method | trainable params | trainable % | train tok/s | step vs frozen | peak GPU MiB | decode tok/s | decode vs base |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
let frozenMs = 0;
for (const [name, cfg, lr] of METHODS) {
  gpu.trim();
  const model = await loadModel(path, { gpu, contextLength: 512 });
  const a = model.addAdapter("m", cfg, 1);
  const stamps: number[] = [];
  const t0 = performance.now();
  const res = await train(model, {
    adapter: "m", data: DATA, seqLen: seq, batchSize: batch, maxSteps: steps, learningRate: lr, progress: false,
    maxExamples: batch * (steps + 1), onStep: () => stamps.push(performance.now()),
  });
  const stepMs = median(stamps.map((s, i) => s - (i ? stamps[i - 1] : t0)).slice(1));
  if (!frozenMs) frozenMs = stepMs;
  const dec = await decodeTokS(model, "m");
  const pct = 100 * a.trainableParameters / (model.baseParameters() + a.trainableParameters);
  console.log(
    `| ${name} | ${a.trainableParameters.toLocaleString("en-US")} | ${pct.toFixed(4)} | ${(batch * seq / (stepMs / 1000)).toFixed(0)} | ` +
      `${(stepMs / frozenMs).toFixed(2)}x | ${MiB(res.peakGpuBytes)} | ${dec.toFixed(1)} | ${(dec / baseDecode).toFixed(2)}x |`,
  );
  model.close();
}
console.log(`\nbase model decode: ${baseDecode.toFixed(1)} tok/s`);
gpu.destroy();
