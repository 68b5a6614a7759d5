/**
 * PEFT methods on the non-llama families (the block's hook sites are the same; qwen2's frozen
 * biases, phi3's fused qkv_proj/gate_up_proj and mistral's sliding window sit inside them):
 * GPU gradients equal the CPU reference's and central finite differences, merges equal the
 * unmerged adapters ((IA)³ scales qwen2's k/v biases as PEFT merges them), adapters keep HF's
 * q/k row order on disk without permuting NEOX families, and a LoRA training run on a qwen2
 * model lowers the eval loss.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel, type Model } from "../../src/api/model.ts";
import { readSafetensors } from "../../src/io/safetensors.ts";
import { evalLoss, lossAndGrads } from "../../src/model/llama_train.ts";
import { referenceBackend, referenceLoss } from "../../src/model/llama_reference.ts";
import { loraKeys } from "../../src/peft/lora/method.ts";
import { train } from "../../src/train/trainer.ts";
import { isErr, randn, SHARED, testGpu } from "../helpers.ts";
import { familyModel } from "./fixtures.ts";

async function open(name: string, over = {}): Promise<Model> {
  return await loadModel((await familyModel(name, over)).gguf, { gpu: await testGpu() });
}

/** Non-zero LoRA B (as if trained). */
function perturb(m: Model, name: string, seed: number) {
  for (const [k, p] of m.adapter(name).params) if (k.endsWith("lora_B.weight")) m.gpu.write(p.value, randn(p.value.size, seed + k.length, 0.05));
}

const batch = { B: 2, T: 12, inputs: Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % 512), targets: Array.from({ length: 24 }, (_, i) => (i * 53 + 11) % 512) };
const count = batch.targets.length;

/** |got - want| / |want|, or |got| when the reference gradient is zero (an identity-initialised branch). */
function relErr(got: Float32Array, want: Float32Array): number {
  let err = 0, norm = 0;
  for (let i = 0; i < got.length; i++) {
    err += (got[i] - want[i]) ** 2;
    norm += want[i] ** 2;
  }
  return norm > 0 ? Math.sqrt(err / norm) : Math.sqrt(err);
}

Deno.test("families: every method's GPU gradients equal the CPU reference's (qwen2 biases, phi3 fused projections, mistral window: LoRA with dropout, DoRA; qwen2 and phi3: (IA)³, BitFit, LN tuning, partial, prompt and prefix tuning, bottleneck)", async () => {
  for (const fam of ["qwen2", "phi3", "mistral"]) {
    const m = await open(fam);
    try {
      const host = new Map<string, Float32Array>();
      for (const [n, t] of m.llama.weights) host.set(n, await m.gpu.readF32(t));
      const be = referenceBackend(m.config, host);
      for (const [name, cfg] of [
        ["lora", { r: 4, lora_alpha: 8, lora_dropout: 0.2, target_modules: "all-linear" }],
        ["dora", { r: 4, lora_alpha: 8, use_dora: true, target_modules: "all-linear" }],
        // The other methods' hook sites (embedding prefix, key/value prefix, residual, norm, input/output scaling, weight replacement).
        ...(fam === "mistral" ? [] : [
          ["ia3", fam === "phi3" ? { peft_type: "IA3", target_modules: ["qkv_proj", "down_proj"], feedforward_modules: ["down_proj"], init_ia3_weights: false } : { peft_type: "IA3", init_ia3_weights: false }],
          ["bitfit", { peft_type: "BITFIT" }],
          ["ln_tuning", { peft_type: "LN_TUNING" }],
          ["partial", { peft_type: "PARTIAL", target_modules: "all", layers_to_transform: [1] }],
          ["prompt", { peft_type: "PROMPT_TUNING", num_virtual_tokens: 3 }],
          ["prefix", { peft_type: "PREFIX_TUNING", num_virtual_tokens: 3 }],
          ["bottleneck", { peft_type: "BOTTLENECK", config: "par_bn", init_weights: "bert" }],
        ] as const),
      ] as const) {
        const a = m.addAdapter(name, cfg, 3);
        if (name === "lora" || name === "dora") perturb(m, name, 9);
        const slots = a.trainable();
        const lossT = lossAndGrads(m.llama, a.hooks(), batch, { seed: 5, gradScale: 1 / count });
        const gpuLoss = (await m.gpu.readF32(lossT)).reduce((s, v) => s + v, 0) / count;
        lossT.release();
        const cpuGrads = new Map<string, Float32Array>();
        const cpuLoss = referenceLoss(m.config, be, await a.hostHooks(1, cpuGrads), batch, { grad: true, training: true, seed: 5 });
        assert.ok(Math.abs(gpuLoss - cpuLoss) < 1e-4 * cpuLoss, `${fam} ${name}: loss ${gpuLoss} vs CPU ${cpuLoss}`);
        let worst = 0;
        for (const s of slots) worst = Math.max(worst, relErr(await m.gpu.readF32(s.grad), cpuGrads.get(s.key)!));
        assert.ok(worst < 1e-4, `${fam} ${name}: worst relative gradient error ${worst}`);
        console.log(`  ${fam} ${name}: loss ${gpuLoss.toFixed(5)}, worst gradient error ${worst.toExponential(2)} over ${slots.length} tensors`);
        m.deleteAdapter(name);
      }
    } finally {
      m.close();
    }
  }
});

Deno.test("families: qwen2 LoRA gradients agree with central finite differences of the GPU eval loss", async () => {
  const m = await open("qwen2");
  try {
    const a = m.addAdapter("fd", { r: 2, lora_alpha: 2, target_modules: ["q_proj", "k_proj", "v_proj"] }, 4);
    perturb(m, "fd", 3);
    a.trainable();
    const lossT = lossAndGrads(m.llama, a.hooks(), batch, { seed: 1, gradScale: 1 / count });
    lossT.release();
    const evalMean = async () => {
      const t = evalLoss(m.llama, a.hooks(), batch);
      const v = (await m.gpu.readF32(t)).reduce((s, x) => s + x, 0) / count;
      t.release();
      return v;
    };
    for (const module of ["q_proj", "k_proj", "v_proj"]) {
      const p = a.params.get(loraKeys({ layer: 1, module }).B)!;
      const grad = await m.gpu.readF32(p.grad!);
      const base = await m.gpu.readF32(p.value);
      for (const i of [0, 5, 17]) {
        const h = 5e-3;
        const plus = base.slice(), minus = base.slice();
        plus[i] += h;
        minus[i] -= h;
        m.gpu.write(p.value, plus);
        const lp = await evalMean();
        m.gpu.write(p.value, minus);
        const lm = await evalMean();
        m.gpu.write(p.value, base);
        const fd = (lp - lm) / (plus[i] - minus[i]);
        assert.ok(Math.abs(fd - grad[i]) < 2e-3 + 2e-2 * Math.abs(grad[i]), `${module} lora_B[${i}]: fd ${fd} vs ${grad[i]}`);
      }
    }
  } finally {
    m.close();
  }
});

Deno.test("families: merged logits equal unmerged on qwen2 (LoRA, DoRA, (IA)³ with its k/v biases) and phi3 (fused qkv_proj, gate_up_proj); unmerge restores the base", async () => {
  for (const [fam, adapters] of [
    ["qwen2", [["lora", { r: 4, lora_alpha: 8, target_modules: "all-linear" }], ["dora", { r: 4, use_dora: true, target_modules: ["q_proj", "k_proj", "v_proj"] }], ["ia3", { peft_type: "IA3", init_ia3_weights: false }]]],
    ["phi3", [["lora", { r: 4, lora_alpha: 8, target_modules: ["qkv_proj", "gate_up_proj", "o_proj"] }], ["ia3", { peft_type: "IA3", target_modules: ["qkv_proj", "down_proj"], feedforward_modules: ["down_proj"], init_ia3_weights: false }]]],
  ] as const) {
    const m = await open(fam);
    try {
      const ids = [1, 403, 407, 261, 378, 432, 383, 286];
      const before = new Map<string, Float32Array>();
      for (const [n, t] of m.llama.weights) before.set(n, await m.gpu.readF32(t));
      const baseLogits = (await m.logits(ids)).flatMap((r) => [...r]);
      for (const [name, cfg] of adapters) {
        m.addAdapter(name, cfg, 2);
        if (name !== "ia3") perturb(m, name, 5);
        const unmerged = (await m.logits(ids, { adapter: name })).flatMap((r) => [...r]);
        const moved = Math.max(...unmerged.map((v, i) => Math.abs(v - baseLogits[i])));
        await m.merge(name);
        const merged = (await m.logits(ids)).flatMap((r) => [...r]);
        const scale = Math.max(...unmerged.map(Math.abs));
        const diff = Math.max(...merged.map((v, i) => Math.abs(v - unmerged[i])));
        assert.ok(moved > 1e-3, `${fam} ${name}: the adapter changes nothing`);
        assert.ok(diff <= 2e-5 * scale, `${fam} ${name}: merged logits differ by ${diff} (scale ${scale})`);
        await m.unmerge(name);
        for (const [n, t] of m.llama.weights) assert.deepEqual(await m.gpu.readF32(t), before.get(n), `${fam} ${name}: ${n} restored`);
      }
    } finally {
      m.close();
    }
  }
});

Deno.test("families: PEFT adapter files keep HF's row order (qwen2: q/k lora_B as in memory; llama: permuted) and reload to the same logits; phi3's default target is qkv_proj", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const fam of ["qwen2", "llama"]) {
      const m = await open(fam);
      try {
        m.addAdapter("a", { r: 4, target_modules: ["q_proj", "k_proj"] }, 1);
        perturb(m, "a", 7);
        const want = (await m.logits([1, 5, 9, 200], { adapter: "a" })).flatMap((r) => [...r]);
        await m.saveAdapter("a", join(dir, fam));
        const st = await readSafetensors(join(dir, fam, "adapter_model.safetensors"));
        const k = loraKeys({ layer: 0, module: "q_proj" }).B;
        const onDisk = await st.readF32(k);
        await st.close();
        const inMemory = await m.gpu.readF32(m.adapter("a").params.get(k)!.value);
        if (fam === "qwen2") assert.deepEqual(onDisk, inMemory, "qwen2: NEOX rows are HF's order already");
        else assert.notDeepEqual(onDisk, inMemory, "llama: rows permuted back to HF order");
        await m.loadAdapter("b", join(dir, fam));
        const got = (await m.logits([1, 5, 9, 200], { adapter: "b" })).flatMap((r) => [...r]);
        assert.ok(Math.max(...got.map((v, i) => Math.abs(v - want[i]))) < 1e-6, `${fam}: reloaded adapter gives the same logits`);
      } finally {
        m.close();
      }
    }
    const phi = await open("phi3");
    try {
      const a = phi.addAdapter("d", { r: 2 }, 1);
      assert.deepEqual([...a.params.keys()].filter((k) => k.endsWith("lora_A.weight")).map((k) => k.split(".").slice(-4, -2).join(".")), ["self_attn.qkv_proj", "self_attn.qkv_proj"]);
      assert.throws(() => phi.addAdapter("x", { r: 2, target_modules: ["q_proj"] }), isErr("LORA_UNKNOWN_TARGET", "q_proj", "qkv_proj, o_proj, gate_up_proj, down_proj"));
    } finally {
      phi.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("families: LoRA training on a qwen2 model lowers the eval loss", async () => {
  const m = await open("qwen2", { tied: false });
  const dir = await Deno.makeTempDir();
  try {
    const text = (await Deno.readTextFile(`${SHARED}data/tinyshakespeare.txt`)).slice(0, 6000);
    await Deno.writeTextFile(join(dir, "data.txt"), text);
    m.addAdapter("t", { r: 8, lora_alpha: 16, target_modules: "all-linear" }, 1);
    const r = await train(m, { adapter: "t", data: join(dir, "data.txt"), seqLen: 32, batchSize: 4, learningRate: 3e-3, maxSteps: 30, evalFraction: 0.2, progress: false });
    const first = r.initialEvalLoss!, last = r.finalEvalLoss!;
    assert.ok(last < first - 0.2, `eval loss ${first} -> ${last}`);
  } finally {
    m.close();
    await Deno.remove(dir, { recursive: true });
  }
});
