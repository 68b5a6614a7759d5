/**
 * computeDtype "f16": base linears stored f16 (or 4-bit), activations narrowed to f16 for the base
 * matmuls, LoRA and optimizer f32, dynamic loss scaling. Checked on stories260K against the f32
 * model: logits and greedy text, LoRA gradients (with and without loss scaling), a CI-sized
 * fine-tune within 5% of the f32 run, overflow handling, merge/unmerge and export.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type Model } from "../../src/api/model.ts";
import { lossAndGrads } from "../../src/model/llama_train.ts";
import { train, type TrainOptions } from "../../src/train/trainer.ts";
import { loraBs, SHARED, STORIES, testGpu } from "../helpers.ts";

const DATA = `${SHARED}data/tinyshakespeare.txt`;
const LORA = { r: 8, lora_alpha: 16, target_modules: "all-linear", lora_dropout: 0 };

async function open(computeDtype: "f32" | "f16", quantize?: "nf4"): Promise<Model> {
  const gpu = await testGpu();
  assert.ok(gpu.info.features.f16, "the test GPU (Deno on lavapipe) offers shader-f16");
  const m = await loadModel(STORIES, { gpu, computeDtype, quantize, doubleQuant: quantize ? true : undefined });
  assert.equal(m.computeDtype, computeDtype);
  return m;
}

function maxAbsDiff(a: Float32Array[], b: Float32Array[]): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) for (let j = 0; j < a[i].length; j++) d = Math.max(d, Math.abs(a[i][j] - b[i][j]));
  return d;
}

Deno.test("f16 compute: linears stored f16 (half the bytes), logits near f32's, same greedy text", async () => {
  const f32 = await open("f32"), f16 = await open("f16");
  try {
    const p32 = f32.parameterReport(), p16 = f16.parameterReport();
    console.log(`  linears: f32 ${p32.f32Bytes} B in all; f16 model: ${p16.f16Params} params in ${p16.f16Bytes} B f16 + ${p16.f32Bytes} B f32`);
    assert.ok(p16.f16Params > 0 && p16.f16Bytes <= p16.f16Params * 2 + 16 * 64, "f16 linears cost 2 bytes a parameter");
    assert.equal(p16.f16Params + p16.f32Params, p32.f32Params);
    assert.equal(f16.memoryReport().base_f16, p16.f16Bytes);
    const ids = f32.encodePrompt("Once upon a time, there was a little girl named Lily.");
    const [a, b] = [await f32.logits(ids), await f16.logits(ids)];
    const d = maxAbsDiff(a, b);
    console.log(`  max |logit f16 - logit f32| over ${ids.length} positions: ${d.toExponential(3)}`);
    assert.ok(d > 0, "f16 rounding changes the logits a little");
    assert.ok(d < 0.05, `f16 logits too far from f32: ${d}`);
    const opts = { maxTokens: 40, temperature: 0 };
    const [t32, t16] = [await f32.complete("Once upon a time", opts), await f16.complete("Once upon a time", opts)];
    console.log(`  f32: ${JSON.stringify(t32)}\n  f16: ${JSON.stringify(t16)}`);
    assert.equal(t16.split(".")[0], t32.split(".")[0], "the first sentence is the same");
  } finally {
    f32.close();
    f16.close();
  }
});

Deno.test("computeDtype: \"auto\" picks f16 where shader-f16 exists; bad values are named", async () => {
  const gpu = await testGpu();
  const m = await loadModel(STORIES, { gpu, computeDtype: "auto" });
  try {
    assert.equal(m.computeDtype, gpu.info.features.f16 ? "f16" : "f32");
  } finally {
    m.close();
  }
  await assert.rejects(loadModel(STORIES, { gpu, computeDtype: "bf16" as "f16" }), (e: Error & { code?: string }) =>
    e.code === "BAD_PARAMETER" && /computeDtype must be "f32", "f16" or "auto", got "bf16"/.test(e.message));
});

Deno.test("f16 compute: LoRA gradients match f32's; loss scaling keeps small gradients that f16 would flush", async () => {
  const grads = async (m: Model, gradScale: number) => {
    m.addAdapter("g", { ...LORA, init_lora_weights: "gaussian" }, 3);
    // B = 0 at init gives dA = 0: make B random too so every gradient is non-trivial
    const a = m.adapter("g");
    for (const B of loraBs(a)) m.gpu.write(B, Float32Array.from({ length: B.size }, (_, i) => Math.sin(i * 12.9898 + B.size) * 0.02));
    const slots = a.trainable();
    const rows = 2 * 32;
    const inputs = m.encodePrompt("ROMEO: But, soft! what light through yonder window breaks? It is the east, and Juliet is the sun. Arise, fair sun").slice(0, rows + 1);
    const batch = { B: 2, T: 32, inputs: inputs.slice(0, rows), targets: inputs.slice(1, rows + 1) };
    lossAndGrads(m.llama, a.hooks(), batch, { seed: 1, gradScale }).release();
    const out = new Map<string, Float32Array>();
    for (const s of slots) out.set(s.key, (await m.gpu.readF32(s.grad)).map((v) => v / gradScale));
    return out;
  };
  const relErr = (a: Map<string, Float32Array>, ref: Map<string, Float32Array>) => {
    let num = 0, den = 0;
    for (const [k, r] of ref) {
      const x = a.get(k)!;
      for (let i = 0; i < r.length; i++) {
        num += (x[i] - r[i]) ** 2;
        den += r[i] ** 2;
      }
    }
    return Math.sqrt(num / den);
  };
  const tiny = 1 / 2 ** 20; // a mean over many tokens makes gradients this small (and smaller)
  const f32 = await open("f32"), f16 = await open("f16");
  try {
    const ref = await grads(f32, tiny);
    const scaled = relErr(await grads(f16, tiny * 2 ** 16), ref);
    f16.deleteAdapter("g");
    const unscaled = relErr(await grads(f16, tiny), ref);
    console.log(`  relative L2 error of f16-compute LoRA grads vs f32: loss scale 2^16 ${scaled.toExponential(3)}, no scaling ${unscaled.toExponential(3)}`);
    assert.ok(scaled < 5e-3, `scaled f16 grads off by ${scaled}`);
    assert.ok(unscaled > 10 * scaled, "without loss scaling f16 loses the small gradients");
  } finally {
    f32.close();
    f16.close();
  }
});

const FT: TrainOptions = {
  adapter: "a", data: DATA, seqLen: 64, batchSize: 8, maxSteps: 40, learningRate: 3e-3, evalFraction: 0.1,
  maxExamples: 600, maxEvalBatches: 4, seed: 5, progress: false,
};

Deno.test("f16 compute: the CI-sized fine-tune ends within 5% of the f32 run (f32 and NF4 bases)", async () => {
  const out: Record<string, number> = {};
  for (const [name, dtype, q] of [["f32", "f32", undefined], ["f16", "f16", undefined], ["nf4+f16", "f16", "nf4"]] as const) {
    const m = await open(dtype, q);
    try {
      m.addAdapter("a", LORA, 1);
      const res = await train(m, FT);
      out[name] = res.finalEvalLoss!;
      console.log(`  ${name.padEnd(8)} eval loss ${res.initialEvalLoss!.toFixed(4)} -> ${res.finalEvalLoss!.toFixed(4)}; skipped steps ${res.skippedSteps}; loss scale ${res.lossScale ?? "-"}; GPU peak ${res.peakGpuBytes} B (planned ${res.plan.total})`);
      assert.ok(Math.abs(res.plan.total / res.peakGpuBytes - 1) <= 0.1, `${name}: planner ${res.plan.total} vs peak ${res.peakGpuBytes}`);
      if (dtype === "f16") assert.equal(res.lossScale, 2 ** 16, "no overflow at the default scale");
    } finally {
      m.close();
    }
  }
  for (const k of ["f16", "nf4+f16"]) {
    const rel = out[k] / out.f32 - 1;
    console.log(`  ${k} final eval loss is ${(100 * rel).toFixed(2)}% from f32's`);
    assert.ok(Math.abs(rel) <= 0.05, `${k} ${out[k]} vs f32 ${out.f32}`);
  }
});

Deno.test("f16 compute: overflowing gradients skip the step and lower the loss scale", async () => {
  const m = await open("f16");
  try {
    m.addAdapter("a", LORA, 1);
    const before = (await m.adapter("a").peftTensors()).tensors;
    const steps: number[] = [];
    const res = await train(m, {
      ...FT, maxSteps: 3, maxExamples: 40, lossScaling: { initScale: 2 ** 40, backoffFactor: 2 ** -12 },
      onStep: (s) => steps.push(s.step),
    });
    console.log(`  skipped ${res.skippedSteps} of ${res.steps} steps; loss scale 2^40 -> 2^${Math.log2(res.lossScale!)}`);
    assert.ok(res.skippedSteps >= 1 && res.skippedSteps < 3, `skipped ${res.skippedSteps}`);
    assert.equal(res.lossScale, 2 ** (40 - 12 * res.skippedSteps));
    assert.deepEqual(steps, [1, 2, 3]);
    assert.ok(res.losses.every(Number.isFinite));
    const after = (await m.adapter("a").peftTensors()).tensors;
    const changed = [...after].some(([k, t]) => t.data.some((v, i) => v !== before.get(k)!.data[i]));
    assert.ok(changed, "the steps after the overflow update the adapter");
  } finally {
    m.close();
  }
});

Deno.test("f16 compute: merge adds the adapter into f16 weights, unmerge restores them exactly, save exports f32", async () => {
  const m = await open("f16");
  const dir = await mkdtemp(join(tmpdir(), "peft-f16-"));
  try {
    m.addAdapter("a", { ...LORA, init_lora_weights: "gaussian" }, 7);
    const a = m.adapter("a");
    for (const B of loraBs(a)) m.gpu.write(B, Float32Array.from({ length: B.size }, (_, i) => Math.cos(i * 7.1 + B.size) * 0.05));
    const ids = m.encodePrompt("Once upon a time");
    const base = await m.logits(ids);
    const withAdapter = await m.logits(ids, { adapter: "a" });
    await m.merge("a");
    assert.ok(m.parameterReport().f16Params > 0, "merged weights stay f16");
    const merged = await m.logits(ids);
    const dm = maxAbsDiff(merged, withAdapter), da = maxAbsDiff(withAdapter, base);
    console.log(`  adapter moves logits by ${da.toFixed(4)}; merged vs unmerged adapter ${dm.toExponential(3)}`);
    assert.ok(da > 0.05 && dm < 0.05 * da, `merge: ${dm} vs adapter effect ${da}`);
    await m.unmerge("a");
    assert.deepEqual(await m.logits(ids), base, "unmerge restores the f16 weights exactly");
    const path = join(dir, "m.gguf");
    await m.save(path);
    const back = await loadModel(path, { gpu: m.gpu });
    try {
      const d = maxAbsDiff(await back.logits(ids), base);
      console.log(`  saved f32 GGUF reloaded (f32 compute) vs f16 model: ${d.toExponential(3)}`);
      assert.ok(d < 0.05, `export ${d}`);
    } finally {
      back.close();
    }
  } finally {
    m.close();
    await rm(dir, { recursive: true, force: true });
  }
});
