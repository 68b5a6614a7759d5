/**
 * LoRA training speed and GPU memory (issue #5): our WebGPU trainer (train(): forward + backward
 * + grad-norm clipping + AdamW, all on the GPU) beside the same LoRA training in PyTorch on the
 * CPU (bench/lora_torch.py: float32, 2 threads), same GGUF weights, same run:
 *   - stories260K, batch 8 x seq 256;
 *   - the random ~25M llama (dim 512, 8 layers, ffn 1376, vocab 32000), seq 256, smaller batch.
 * LoRA r=8, alpha 16, dropout 0 on q_proj, v_proj; lr 2e-4, clip 1.0. Our data: tinyshakespeare
 * windows (tokenized by our tokenizer); PyTorch's: seeded random ids (speed does not depend on it).
 * Tokens/s is batch*seq over the median optimizer-step time, warm-up step excluded.
 * GPU memory: the peak bytes our allocator held per category during training (weights, lora,
 * gradients, optimizer, activations, kv_cache, ...) and the overall peak incl. pool slack.
 * WebGPU cannot report more. PyTorch's column reports process peak RSS and tensor bytes.
 *
 *   node scripts/prepare.mjs && deno run -A bench/train.ts [--quick] [--no-peer]
 */
import { Gpu, type Tensor } from "../src/gpu/gpu.ts";
import { loadModel } from "../src/api/model.ts";
import { train } from "../src/train/trainer.ts";
import { LLAMA_25M, median, parameterCounts, randomLlamaGGUF, SHARED, STORIES260K } from "./lib/random_llama.ts";

const quick = Deno.args.includes("--quick");
const noPeer = Deno.args.includes("--no-peer");
const DATA = `${SHARED}data/tinyshakespeare.txt`;
const LORA = { r: 8, lora_alpha: 16, lora_dropout: 0, target_modules: ["q_proj", "v_proj"] };

interface Case { name: string; path: string; batch: number; seq: number; steps: number; torchSteps: number }
const cases: Case[] = [
  { name: "stories260K", path: STORIES260K, batch: 8, seq: 256, steps: quick ? 3 : 5, torchSteps: quick ? 3 : 8 },
  { name: "random llama 25M", path: await randomLlamaGGUF(LLAMA_25M), batch: quick ? 1 : 2, seq: 256, steps: quick ? 2 : 3, torchSteps: quick ? 2 : 4 },
];

const MiB = (b: number) => (b / 2 ** 20).toFixed(b < 2 ** 20 ? 3 : 1);

interface Ours { tokS: number; stepMs: number; peak: Record<string, number>; peakTotal: number; trainable: number; losses: number[] }

async function ours(gpu: Gpu, c: Case): Promise<Ours> {
  gpu.trim();
  const model = await loadModel(c.path, { gpu, contextLength: c.seq });
  const adapter = model.addAdapter("bench", LORA, 0);
  // Track the peak bytes of each category: wrap this Gpu's allocator.
  const peak: Record<string, number> = {};
  const g = gpu as unknown as { tensor: (...a: unknown[]) => Tensor };
  const alloc = Gpu.prototype.tensor;
  const note = () => {
    for (const [k, v] of Object.entries(gpu.memoryByCategory())) if (v > (peak[k] ?? 0)) peak[k] = v;
  };
  g.tensor = (...a: unknown[]) => {
    const t = (alloc as (...a: unknown[]) => Tensor).apply(gpu, a);
    note();
    return t;
  };
  gpu.resetPeak();
  note();
  const stamps: number[] = [];
  const t0 = performance.now();
  const res = await train(model, {
    adapter: "bench", data: DATA, seqLen: c.seq, batchSize: c.batch, maxSteps: c.steps, learningRate: 2e-4, maxGradNorm: 1,
    progress: false, maxExamples: c.batch * (c.steps + 1), onStep: () => stamps.push(performance.now()),
  });
  const steps = stamps.map((s, i) => s - (i ? stamps[i - 1] : t0)).slice(1); // first step: warm-up (pipeline compiles)
  const stepMs = median(steps);
  const out = { tokS: c.batch * c.seq / (stepMs / 1000), stepMs, peak, peakTotal: gpu.peakBytesHeld(), trainable: adapter.trainableParameters, losses: res.losses };
  delete (g as { tensor?: unknown }).tensor; // back to the prototype's method
  model.close();
  gpu.trim();
  return out;
}

interface Torch { tokS: number; stepMs: number; peakRssBytes: number; weightsBytes: number; loraBytes: number; gradBytes: number; optimizerBytes: number; trainable: number; threads: number; torch: string }

async function torch(c: Case): Promise<Torch | { error: string }> {
  const script = new URL("./lora_torch.py", import.meta.url).pathname;
  const out = await new Deno.Command("/usr/bin/python3", {
    args: [script, c.path, String(c.batch), String(c.seq), String(c.torchSteps)],
    env: { OMP_NUM_THREADS: "2", OMP_WAIT_POLICY: "PASSIVE" }, stdout: "piped", stderr: "piped",
  }).output().catch((e) => ({ success: false, stdout: new Uint8Array(), stderr: new TextEncoder().encode(String(e)) }));
  if (!out.success) return { error: new TextDecoder().decode(out.stderr).trim().split("\n").slice(-2).join(" ") };
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
}

const gpu = await Gpu.create();
console.log(`# LoRA training (r=8 on q_proj, v_proj): ours on WebGPU (${gpu.info.description}, ${gpu.info.runtime}) vs PyTorch on the CPU`);
console.log(`# ${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} logical CPUs shared with other work (noisy); median step after a warm-up step`);
if (/llvmpipe|lavapipe|swiftshader|software/i.test(gpu.info.description)) {
  console.log(`# NOTE: our GPU here is a SOFTWARE rasteriser (${gpu.info.description}) running on the same CPU cores; our figures are not GPU figures.`);
}
console.log();
const speed: string[] = [], mem: string[] = [];
for (const c of cases) {
  const { total } = parameterCounts(LLAMA_25M);
  const o = await ours(gpu, c);
  const t = noPeer ? { error: "skipped (--no-peer)" } : await torch(c);
  if ("error" in t) console.error(`PyTorch on ${c.name}: ${t.error}`);
  const tt = "error" in t ? undefined : t;
  const fmt = (v: number) => v >= 100 ? v.toFixed(0) : v.toFixed(1);
  speed.push(
    `| ${c.name} | ${c.batch} x ${c.seq} | ${o.trainable} | ${c.steps} | ${fmt(o.tokS)} | ${(o.stepMs / 1000).toFixed(2)} | ` +
      `${tt ? fmt(tt.tokS) : "-"} | ${tt ? (tt.stepMs / 1000).toFixed(2) : "-"} | ${tt ? (o.tokS / tt.tokS).toFixed(2) + "x" : "-"} |`,
  );
  const p = o.peak;
  const other = Object.entries(p).filter(([k]) => !["weights", "lora", "gradients", "optimizer", "activations"].includes(k)).map(([k, v]) => `${k} ${MiB(v)}`).join(", ") || "-";
  mem.push(
    `| ${c.name} | ${c.batch} x ${c.seq} | ${MiB(p.weights ?? 0)} | ${MiB(p.activations ?? 0)} | ${MiB(p.lora ?? 0)} | ${MiB(p.gradients ?? 0)} | ${MiB(p.optimizer ?? 0)} | ${other} | ${MiB(o.peakTotal)} | ` +
      `${tt ? `${MiB(tt.peakRssBytes)} RSS (weights ${MiB(tt.weightsBytes)}, LoRA ${MiB(tt.loraBytes)}, grads ${MiB(tt.gradBytes)}, AdamW ${MiB(tt.optimizerBytes)})` : "-"} |`,
  );
  void total;
}
console.log("| model | batch x seq | trainable params | our steps | ours tok/s (WebGPU on lavapipe = CPU) | ours s/step | PyTorch CPU tok/s (2 threads, f32) | PyTorch s/step | ours / PyTorch |");
console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const r of speed) console.log(r);
console.log("\nPeak GPU memory held by our allocator during training, MiB, by category (each category's own peak; total includes pool slack):\n");
console.log("| model | batch x seq | weights | activations | LoRA params | gradients | optimizer state | other | total peak | PyTorch (CPU) |");
console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |");
for (const r of mem) console.log(r);
gpu.destroy();
