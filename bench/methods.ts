/**
 * The seeds' method table, measured (issues #11 and #12): every PEFT method of the product on the
 * same task (stories260K -> tinyshakespeare), same steps, tokens, data order and seed, each with a
 * learning rate usual for its family (the `lr` column). Per method:
 *   - trainable parameters (count, % of base + trainable) and the saved adapter's bytes on disk;
 *   - training tokens/s (forward + backward + clip + AdamW, median step after the first) and the
 *     step time relative to the "frozen" row, and peak GPU bytes our allocator held;
 *   - decode tokens/s of the unmerged adapter relative to the base model (greedy, 32 tokens, EOS
 *     ignored, median of runs after a warm-up) and, where the method merges into the weights, the
 *     merged model's decode relative to the base;
 *   - eval loss and perplexity on the held-out split after the run (the base model's is the
 *     first line; every method should end below it).
 *
 * Peers in the same run: the base model (eval loss, decode speed = 1.00x) and the "frozen" row,
 * which trains only the first RMSNorm's weight (64 values): the backward then runs through every
 * layer of the frozen model, so it is the cost of forward + backward with (almost) nothing
 * trainable, the floor the methods are measured against.
 *
 * `--model=25m` runs the table on the random ~25M llama (dim 512, 8 layers, vocab 32000) instead,
 * batch 1 x 128: its speed and memory columns are the figures that matter there (random weights,
 * so its eval losses only say that training moves the loss).
 *
 *   node scripts/prepare.mjs && deno run -A bench/methods.ts [--quick] [--steps=N] [--only=lora,ia3] [--model=25m]
 */
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Gpu } from "../src/gpu/gpu.ts";
import { loadModel, type Model } from "../src/api/model.ts";
import { generateTokens, type GenerationTokenizer } from "../src/infer/generate.ts";
import { train } from "../src/train/trainer.ts";
import { LLAMA_25M, median, randomLlamaGGUF, SHARED, STORIES260K } from "./lib/random_llama.ts";

const arg = (k: string) => Deno.args.find((a) => a.startsWith(`--${k}=`))?.slice(k.length + 3);
const quick = Deno.args.includes("--quick");
const DATA = `${SHARED}data/tinyshakespeare.txt`;
const big = arg("model") === "25m";
const MODEL = big ? await randomLlamaGGUF(LLAMA_25M) : STORIES260K;
const MODEL_NAME = big ? "random llama 25M (d512 L8 V32000)" : "stories260K";
const LAST_LAYER = big ? LLAMA_25M.nLayers - 1 : 4;
const seq = 128, batch = big ? 1 : 8, seed = 42;
const steps = Number(arg("steps") ?? (quick ? 4 : big ? 6 : 60));
const evalBatches = quick || big ? 2 : 8;
const only = arg("only")?.split(",");

interface Row {
  key: string;
  name: string;
  cfg: Record<string, unknown>;
  lr: number;
  quantize?: "nf4";
}
const LORA = { r: 8, lora_alpha: 16 };
const METHODS: Row[] = [
  { key: "frozen", name: "frozen fwd+bwd (first norm only)", cfg: { peft_type: "LN_TUNING", target_modules: "model\\.layers\\.0\\.input_layernorm" }, lr: 1e-3 },
  { key: "lora", name: "LoRA r8 q,v", cfg: { ...LORA, target_modules: ["q_proj", "v_proj"] }, lr: 5e-3 },
  { key: "lora_all", name: "LoRA r8 all-linear", cfg: { ...LORA, target_modules: "all-linear" }, lr: 5e-3 },
  { key: "qlora", name: "QLoRA r8 all-linear (NF4 base)", cfg: { ...LORA, target_modules: "all-linear" }, lr: 5e-3, quantize: "nf4" },
  { key: "dora", name: "DoRA r8 all-linear", cfg: { ...LORA, target_modules: "all-linear", use_dora: true }, lr: 5e-3 },
  { key: "ia3", name: "(IA)³ k,v,down", cfg: { peft_type: "IA3" }, lr: 3e-2 },
  { key: "bitfit", name: "BitFit all-linear", cfg: { peft_type: "BITFIT" }, lr: 1e-2 },
  { key: "ln_tuning", name: "LN tuning", cfg: { peft_type: "LN_TUNING" }, lr: 1e-2 },
  { key: "partial", name: "partial: last layer", cfg: { peft_type: "PARTIAL", target_modules: "all", layers_to_transform: [LAST_LAYER] }, lr: 1e-3 },
  { key: "prompt_tuning", name: "prompt tuning, 20 tokens (TEXT init)", cfg: { peft_type: "PROMPT_TUNING", num_virtual_tokens: 20, prompt_tuning_init: "TEXT", prompt_tuning_init_text: "ROMEO:" }, lr: 3e-2 },
  { key: "p_tuning", name: "P-tuning, 20 tokens (MLP encoder)", cfg: { peft_type: "P_TUNING", num_virtual_tokens: 20, encoder_reparameterization_type: "MLP", encoder_hidden_size: 64 }, lr: 3e-3 },
  { key: "prefix_tuning", name: "prefix tuning, 16 tokens (projection 128)", cfg: { peft_type: "PREFIX_TUNING", num_virtual_tokens: 16, prefix_projection: true, encoder_hidden_size: 128 }, lr: 3e-3 },
  { key: "pfeiffer", name: "bottleneck seq_bn (Pfeiffer), rf 16", cfg: { peft_type: "BOTTLENECK", config: "seq_bn", reduction_factor: 16 }, lr: 3e-3 },
  { key: "houlsby", name: "bottleneck double_seq_bn (Houlsby), rf 16", cfg: { peft_type: "BOTTLENECK", config: "double_seq_bn", reduction_factor: 16 }, lr: 3e-3 },
  { key: "par_bn", name: "bottleneck par_bn, rf 2", cfg: { peft_type: "BOTTLENECK", config: "par_bn", reduction_factor: 2 }, lr: 3e-3 },
  { key: "mam", name: "MAM (prefix 16 + par_bn rf 2)", cfg: { peft_type: "HYBRID", components: { prefix: { peft_type: "PREFIX_TUNING", num_virtual_tokens: 16 }, adapter: { peft_type: "BOTTLENECK", config: "par_bn", reduction_factor: 2 } } }, lr: 3e-3 },
];

const MiB = (b: number) => (b / 2 ** 20).toFixed(2);

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    n += e.isDirectory() ? await dirBytes(join(dir, e.name)) : (await stat(join(dir, e.name))).size;
  }
  return n;
}

/** Decode tokens/s of 31 tokens after the first (greedy, EOS ignored) with the given adapter. */
async function decodeOnce(model: Model, adapter?: string): Promise<number> {
  const ids = model.encodePrompt("Once upon a time, there was a");
  const tok: GenerationTokenizer = { ...model.tokenizer, eosId: -1, encode: model.tokenizer.encode.bind(model.tokenizer), createStreamDecoder: model.tokenizer.createStreamDecoder.bind(model.tokenizer) };
  const g = generateTokens(model.llama, tok, ids, { maxTokens: 32, temperature: 0 }, model.peft.hooksFor(adapter));
  let res;
  while (!(res = await g.next()).done);
  return 31 / (res.value.decodeMs / 1000);
}

/**
 * The adapter's decode speed relative to the base model's, run alternately (base, adapter, base, …)
 * after a warm-up of each, so that a busy machine slows both alike: median(adapter) / median(base).
 */
async function decodeRatio(model: Model, adapter: string | undefined, rounds = big ? 3 : 5): Promise<{ ratio: number; base: number }> {
  await decodeOnce(model);
  await decodeOnce(model, adapter);
  const base: number[] = [], ours: number[] = [];
  for (let r = 0; r < rounds; r++) {
    base.push(await decodeOnce(model));
    ours.push(await decodeOnce(model, adapter));
  }
  return { ratio: median(ours) / median(base), base: median(base) };
}

const gpu = await Gpu.create();
console.log(`# PEFT methods on ${MODEL_NAME} -> tinyshakespeare: ${batch} x ${seq} tokens a step, ${steps} steps, seed ${seed}, eval on ${evalBatches} held-out batches; ${gpu.info.description} (${gpu.info.runtime})`);
if (/llvmpipe|lavapipe|swiftshader|software/i.test(gpu.info.description)) console.log("# NOTE: a SOFTWARE GPU on the CPU cores: relative figures only");
const trainOpts = { data: DATA, seqLen: seq, batchSize: batch, maxSteps: steps, seed, progress: false, evalFraction: 0.05, maxEvalBatches: evalBatches, lrScheduler: "constant" as const, warmupSteps: 0 };

// The base model: its decode speed and eval loss (a fresh, never-trained LoRA has B = 0, so its
// eval before its first update is the base model's own loss).
const base = await loadModel(MODEL, { gpu, contextLength: 512 });
const baseDecode = (await decodeRatio(base, undefined)).base;
base.addAdapter("zero", { r: 1, lora_alpha: 1, target_modules: ["q_proj"] }, seed);
const baseEval = (await train(base, { ...trainOpts, adapter: "zero", maxSteps: 1 })).initialEvalLoss!;
base.close();
console.log(`\nbase model: eval loss ${baseEval.toFixed(3)} (ppl ${Math.exp(baseEval).toFixed(1)}), decode ${baseDecode.toFixed(1)} tok/s`);
console.log("\n| method | lr | trainable params | trainable % | adapter file | train tok/s | step vs frozen | peak GPU MiB | decode vs base (unmerged) | merged decode vs base | eval loss (ppl) |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
let frozenMs = 0;
const tmp = await mkdtemp(join(tmpdir(), "bench-methods-"));
try {
  for (const row of METHODS) {
    if (only && row.key !== "frozen" && !only.includes(row.key)) continue;
    gpu.trim();
    const model = await loadModel(MODEL, { gpu, contextLength: 512, quantize: row.quantize });
    const a = model.addAdapter("m", row.cfg, seed);
    const stamps: number[] = [];
    const t0 = performance.now();
    const res = await train(model, { ...trainOpts, adapter: "m", learningRate: row.lr, onStep: () => stamps.push(performance.now()) });
    const stepMs = median(stamps.map((s, i) => s - (i ? stamps[i - 1] : t0)).slice(1));
    if (!frozenMs) frozenMs = stepMs;
    const dir = join(tmp, row.key);
    await model.saveAdapter("m", dir);
    const bytes = await dirBytes(dir);
    const dec = (await decodeRatio(model, "m")).ratio;
    let merged = "no merge";
    if (a.method.merge) {
      // The merged model against the same weights unmerged with no adapter: each run alternates.
      const unmergedBase: number[] = [], mergedRuns: number[] = [];
      for (let r = 0; r < 3; r++) {
        unmergedBase.push(await decodeOnce(model));
        await model.merge("m");
        mergedRuns.push(await decodeOnce(model));
        await model.unmerge("m");
      }
      merged = `${(median(mergedRuns) / median(unmergedBase)).toFixed(2)}x`;
    }
    const pct = 100 * a.trainableParameters / (model.baseParameters() + a.trainableParameters);
    const ev = res.finalEvalLoss!;
    console.log(
      `| ${row.name} | ${row.lr} | ${a.trainableParameters.toLocaleString("en-US")} | ${pct.toFixed(3)} | ${(bytes / 1024).toFixed(1)} KiB | ` +
        `${(batch * seq / (stepMs / 1000)).toFixed(0)} | ${(stepMs / frozenMs).toFixed(2)}x | ${MiB(res.peakGpuBytes)} | ${dec.toFixed(2)}x | ${merged} | ` +
        `${ev.toFixed(3)} (${Math.exp(ev).toFixed(1)})${ev < baseEval ? "" : " NOT below base"} |`,
    );
    model.close();
  }
} finally {
  await rm(tmp, { recursive: true, force: true });
}
gpu.destroy();
