/**
 * QLoRA vs LoRA, side by side in one run (bytes are what our allocator holds in GPU buffers):
 *   ~25M-parameter config (dim 512, 8 layers, ffn 1376, 8 heads, vocab 512): tokens/s and peak GPU
 *     bytes of LoRA training (r 16, all-linear) on an f32 base vs an NF4 (double-quant) base, each
 *     with computeDtype f32 and f16 (f16 base linears / f16 activations into the 4-bit matmul), and
 *     NF4 + f16 with the 8-bit AdamW;
 *   ~110M config (dim 768, 12 layers, ffn 2048, vocab 32000): GPU bytes only (one step, batch 1,
 *     seq 64), the same four, measured and as the planner predicted it.
 * Random weights (GGUF written to a temp dir), tokens from ../shared/data/tinyshakespeare.txt.
 *
 *   node scripts/prepare.mjs && deno run -A bench/train_qlora.ts [--steps 4] [--skip-110m]
 */
import { rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { Gpu } from "../src/gpu/gpu.ts";
import { loadModel } from "../src/api/model.ts";
import { train } from "../src/train/trainer.ts";
import { randomLlamaGguf, type RandomLlamaShape } from "../tests/qlora/helpers.ts";

const { values: flags } = parseArgs({ args: Deno.args, options: { steps: { type: "string", default: "4" }, "skip-110m": { type: "boolean" } } });
const steps = Number(flags.steps);
const SHARED = new URL("../../shared/", import.meta.url).pathname;
const data = join(SHARED, "data/tinyshakespeare.txt");

interface Row {
  config: string;
  base: string;
  params: number;
  baseBytes: number;
  peak: number;
  planned: number;
  optimizerBytes: number;
  tokensPerS?: number;
}

type Variant = { quantize?: "nf4"; computeDtype: "f32" | "f16"; optimizer?: "adamw_8bit" };
const VARIANTS: Variant[] = [
  { computeDtype: "f32" }, { computeDtype: "f16" }, { quantize: "nf4", computeDtype: "f32" }, { quantize: "nf4", computeDtype: "f16" },
  { quantize: "nf4", computeDtype: "f16", optimizer: "adamw_8bit" },
];

async function run(gpu: Gpu, path: string, config: string, v: Variant, o: { batchSize: number; seqLen: number; steps: number; timed: boolean }): Promise<Row> {
  const { quantize, computeDtype, optimizer } = v;
  if (computeDtype === "f16" && !gpu.info.features.f16) throw new Error("this GPU has no shader-f16: the f16 rows cannot run");
  const m = await loadModel(path, { gpu, quantize, doubleQuant: quantize ? true : undefined, computeDtype });
  try {
    m.addAdapter("a", { r: 16, lora_alpha: 32, target_modules: "all-linear", lora_dropout: 0 }, 1);
    const times: number[] = [];
    let tokens = 0;
    let last = performance.now();
    const res = await train(m, {
      adapter: "a", data, seqLen: o.seqLen, batchSize: o.batchSize, maxSteps: o.steps, maxExamples: o.batchSize * (o.steps + 1),
      progress: false, seed: 1, optimizer,
      onStep: (r) => {
        const now = performance.now();
        if (r.step > 1) { // the first step compiles pipelines
          times.push(now - last);
          tokens += r.tokens;
        }
        last = now;
      },
    });
    const p = m.parameterReport();
    const total = times.reduce((a, b) => a + b, 0);
    return {
      config, base: `${quantize ? "nf4+dq" : computeDtype === "f16" ? "f16" : "f32"}, compute ${computeDtype}${optimizer ? `, ${optimizer}` : ""}`, optimizerBytes: res.plan.classes.optimizer, params: p.quantizedParams + p.f16Params + p.f32Params, baseBytes: p.quantizedBytes + p.f16Bytes + p.f32Bytes,
      peak: res.peakGpuBytes, planned: res.plan.total, tokensPerS: o.timed && times.length ? tokens / (total / 1000) : undefined,
    };
  } finally {
    m.close();
    gpu.trim();
  }
}

const gpu = await Gpu.create();
console.log(`device: ${gpu.info.description}`);
const rows: Row[] = [];
const configs: [string, RandomLlamaShape, { batchSize: number; seqLen: number; steps: number; timed: boolean }][] = [
  ["25M", { dim: 512, nLayers: 8, hiddenDim: 1376, nHeads: 8, nKvHeads: 8, vocabSize: 512, seed: 1 }, { batchSize: 8, seqLen: 64, steps: Math.max(2, steps), timed: true }],
];
if (!flags["skip-110m"]) {
  configs.push(["110M", { dim: 768, nLayers: 12, hiddenDim: 2048, nHeads: 12, nKvHeads: 12, vocabSize: 32000, seed: 2, f16: true }, { batchSize: 1, seqLen: 64, steps: 1, timed: false }]);
}
for (const [name, shape, o] of configs) {
  const path = await randomLlamaGguf(shape);
  try {
    for (const v of VARIANTS) {
      const r = await run(gpu, path, name, v, o);
      rows.push(r);
      console.log(`  ${name} ${r.base}: done`);
    }
  } finally {
    await rm(dirname(path), { recursive: true, force: true });
  }
}

const MiB = (b: number) => (b / 2 ** 20).toFixed(1);
const head = ["config", "base", "params", "base weights MiB", "optimizer MiB", "peak GPU MiB", "planned MiB", "tokens/s", "peak reduction", "weights reduction"];
const lines = [head];
for (const r of rows) {
  const ref = rows.find((x) => x.config === r.config)!; // the first row: f32 base, f32 compute
  lines.push([
    r.config, r.base, `${(r.params / 1e6).toFixed(1)}M`, MiB(r.baseBytes), MiB(r.optimizerBytes), MiB(r.peak), MiB(r.planned),
    r.tokensPerS === undefined ? "-" : r.tokensPerS.toFixed(0),
    r === ref ? "1.00x" : `${(ref.peak / r.peak).toFixed(2)}x`, r === ref ? "1.00x" : `${(ref.baseBytes / r.baseBytes).toFixed(2)}x`,
  ]);
}
const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i].length)));
console.log(lines.map((l) => l.map((c, i) => c.padStart(widths[i])).join("  ")).join("\n"));
console.log("LoRA r 16 on all linears; 25M: batch 8 x seq 64, tokens/s over steps 2..N; 110M: one step of 1 x 64 (bytes only).");
const out = Deno.env.get("BENCH_JSON");
if (out) await writeFile(out, JSON.stringify(rows, null, 2));
gpu.destroy();
