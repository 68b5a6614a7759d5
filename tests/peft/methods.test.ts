/**
 * Every method behind the one interface on stories260K: PEFT's trainable-parameter counts,
 * GPU hooks equal to the same hooks on the CPU reference model (logits and gradients), merged
 * logits equal to unmerged ones and exact unmerge, and a clear error for each bad combination.
 */
import assert from "node:assert/strict";
import { loadModel, type Model } from "../../src/api/model.ts";
import { evalLoss, lossAndGrads } from "../../src/model/llama_train.ts";
import { referenceBackend, referenceLoss } from "../../src/model/llama_reference.ts";
import { formatTrainableParameters } from "../../src/peft/targets.ts";
import { loraBs, randn, STORIES, testGpu, isErr } from "../helpers.ts";

const FIXTURES = new URL("../fixtures/methods/", import.meta.url).pathname;
// stories260K: dim 64, hidden 172, 8 heads / 4 kv heads of 8, 5 layers, tied head, 512 tokens.
const SHAPES: Record<string, [number, number]> = {
  q_proj: [64, 64], k_proj: [32, 64], v_proj: [32, 64], o_proj: [64, 64], gate_proj: [172, 64], up_proj: [172, 64], down_proj: [64, 172],
};
const L = 5, BASE = 301_760 - 8_960; // all params minus the README's LoRA example

async function open(): Promise<Model> {
  return await loadModel(STORIES, { gpu: await testGpu() });
}

Deno.test("methods: print_trainable_parameters equals PEFT's count for each method", async () => {
  const m = await open();
  try {
    assert.equal(m.baseParameters(), BASE);
    const sum = (mods: string[], f: (o: number, i: number) => number) => L * mods.reduce((s, x) => s + f(...SHAPES[x]), 0);
    const all = Object.keys(SHAPES);
    const cases: [string, Record<string, unknown>, number][] = [
      // LoRA: r·(in + out) per adapted linear (PEFT counts lora_A and lora_B)
      ["lora", { r: 8, lora_alpha: 16, target_modules: ["q_proj", "v_proj"] }, sum(["q_proj", "v_proj"], (o, i) => 8 * (i + o))],
      // DoRA adds the magnitude vector: one value per output row
      ["dora", { r: 4, use_dora: true, target_modules: "all-linear" }, sum(all, (o, i) => 4 * (i + o) + o)],
      // (IA)³: out for ordinary targets, in for feedforward ones (PEFT's llama defaults k, v, down)
      ["ia3", { peft_type: "IA3" }, sum(["k_proj", "v_proj"], (o) => o) + sum(["down_proj"], (_o, i) => i)],
      // LN tuning: a copy of every RMSNorm weight (2 per layer + the final norm)
      ["ln", { peft_type: "LN_TUNING" }, (2 * L + 1) * 64],
      // BitFit: one bias per output row of every block linear
      ["bitfit", { peft_type: "BITFIT" }, sum(all, (o) => o)],
      // Partial: whole linears and norms of the last layer
      ["partial", { peft_type: "PARTIAL", target_modules: "all", layers_to_transform: [4] }, sum(all, (o, i) => o * i) / L + 2 * 64],
    ];
    for (const [name, cfg, want] of cases) {
      const a = m.addAdapter(name, cfg, 1);
      assert.equal(a.trainableParameters, want, name);
      assert.equal(m.printTrainableParameters(name), formatTrainableParameters(want, BASE + want), name);
    }
    assert.equal(m.printTrainableParameters("lora"), "trainable params: 8,960 || all params: 301,760 || trainable%: 2.9692");
  } finally {
    m.close();
  }
});

Deno.test("methods: GPU hooks give the CPU reference model's logits and gradients (partial fine-tuning, LoRA with dropout)", async () => {
  const m = await open();
  try {
    const host = new Map<string, Float32Array>();
    for (const [n, t] of m.llama.weights) host.set(n, await m.gpu.readF32(t));
    const be = referenceBackend(m.config, host);
    const batch = { B: 2, T: 12, inputs: Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % 512), targets: Array.from({ length: 24 }, (_, i) => (i * 53 + 11) % 512) };
    batch.targets[4] = -100;
    const count = batch.targets.filter((t) => t >= 0).length;
    for (const [name, cfg] of [
      ["partial", { peft_type: "PARTIAL", target_modules: ["o_proj", "down_proj", "input_layernorm"], layers_to_transform: [1, 4] }],
      ["lora_dropout", { r: 4, lora_alpha: 8, lora_dropout: 0.25, target_modules: "all-linear", init_lora_weights: false }],
    ] as const) {
      const a = m.addAdapter(name, cfg, 3);
      if (name === "partial") {
        // move the master copies away from the base weights, as training would
        for (const [k, p] of a.params) m.gpu.write(p.value, (await m.gpu.readF32(p.value)).map((v, i) => v + 0.05 * Math.sin(i + k.length)));
      }
      const slots = a.trainable();
      const lossT = lossAndGrads(m.llama, a.hooks(), batch, { seed: 5, gradScale: 1 / count });
      const gpuLoss = (await m.gpu.readF32(lossT)).reduce((s, v) => s + v, 0) / count;
      lossT.release();
      // The CPU reference's gradients accumulate into host buffers of the same parameters.
      const cpuGrads = new Map<string, Float32Array>();
      const cpuHooks = await a.hostHooks(1, cpuGrads);
      const cpuLoss = referenceLoss(m.config, be, cpuHooks, batch, { grad: true, training: true, seed: 5 });
      assert.ok(Math.abs(gpuLoss - cpuLoss) < 1e-4 * cpuLoss, `${name}: loss ${gpuLoss} vs CPU ${cpuLoss}`);
      let worst = 0;
      for (const s of slots) {
        const got = await m.gpu.readF32(s.grad), want = cpuGrads.get(s.key)!;
        let err = 0, norm = 0;
        for (let i = 0; i < got.length; i++) {
          err += (got[i] - want[i]) ** 2;
          norm += want[i] ** 2;
        }
        assert.ok(norm > 0, `${name} ${s.key}: zero gradient`);
        worst = Math.max(worst, Math.sqrt(err / norm));
      }
      assert.ok(worst < 1e-4, `${name}: worst relative gradient error ${worst}`);
      console.log(`  ${name}: loss ${gpuLoss.toFixed(5)} (CPU ${cpuLoss.toFixed(5)}), worst gradient error ${worst.toExponential(2)} over ${slots.length} tensors`);
    }
  } finally {
    m.close();
  }
});

/** Every base weight's bytes, to check unmerge restores them bit for bit. */
async function snapshot(m: Model): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [n, t] of m.llama.weights) out.set(n, await m.gpu.readF32(t));
  return out;
}

Deno.test("methods: merged logits equal unmerged (1e-5 of the logit scale); unmerge restores the f32 base bit for bit", async () => {
  const m = await open();
  try {
    const ids = m.encodePrompt("Once upon a time, there was a little dog who");
    const base = await snapshot(m);
    const baseLogits = (await m.logits(ids)).flatMap((r) => [...r]);
    const lora = m.addAdapter("lora", { r: 4, lora_alpha: 8, target_modules: "all-linear", init_lora_weights: false, use_rslora: true }, 2);
    for (const B of loraBs(lora)) m.gpu.write(B, randn(B.size, B.size, 0.05));
    await m.loadAdapter("dora", `${FIXTURES}dora`);
    await m.loadAdapter("ia3", `${FIXTURES}ia3`);
    await m.loadAdapter("ln", `${FIXTURES}ln_tuning`);
    const partial = m.addAdapter("partial", { peft_type: "PARTIAL", target_modules: "all", layers_to_transform: [2] });
    for (const p of partial.params.values()) m.gpu.write(p.value, (await m.gpu.readF32(p.value)).map((v, i) => v * (1 + 0.1 * Math.cos(i))));
    for (const name of ["lora", "dora", "ia3", "ln", "partial"]) {
      const unmerged = (await m.logits(ids, { adapter: name })).flatMap((r) => [...r]);
      const moved = Math.max(...unmerged.map((v, i) => Math.abs(v - baseLogits[i])));
      await m.merge(name);
      assert.throws(() => m.adapter(name), isErr("UNKNOWN_ADAPTER", "merged"));
      const merged = (await m.logits(ids)).flatMap((r) => [...r]);
      const scale = Math.max(...unmerged.map(Math.abs));
      const diff = Math.max(...merged.map((v, i) => Math.abs(v - unmerged[i])));
      console.log(`  ${name}: adapter moves logits by ${moved.toFixed(4)}; merged vs unmerged ${diff.toExponential(2)} (scale ${scale.toFixed(1)})`);
      assert.ok(moved > 1e-3, `${name}: the adapter changes nothing`);
      assert.ok(diff <= 1e-5 * scale, `${name}: merged logits differ by ${diff}`);
      await m.unmerge(name);
      const after = await snapshot(m);
      for (const [n, v] of base) assert.deepEqual(after.get(n), v, `${name}: ${n} restored bit for bit`);
    }
    // Unmerges must undo merges that share weights in reverse order.
    await m.merge("lora");
    await m.merge("ia3");
    await assert.rejects(m.unmerge("lora"), isErr("MERGE_ORDER", "ia3"));
    await m.unmerge("ia3");
    await m.unmerge("lora");
    for (const [n, v] of await snapshot(m)) assert.deepEqual(v, base.get(n), n);
    m.addAdapter("bitfit", { peft_type: "BITFIT" });
    await assert.rejects(m.merge("bitfit"), isErr("UNSUPPORTED", "bitfit", "bias"));
  } finally {
    m.close();
  }
});

Deno.test("methods: unknown peft_type, bad combinations, other methods' files and DoRA on a 4-bit base are clear errors", async () => {
  const m = await open();
  try {
    assert.throws(() => m.addAdapter("x", { peft_type: "FOO" }), isErr("ADAPTER_BAD_CONFIG", "unknown peft_type", "FOO", "LORA, IA3"));
    assert.throws(() => m.addAdapter("x", { peft_type: "LOHA" }), isErr("ADAPTER_UNSUPPORTED", "LOHA"));
    assert.throws(() => m.addAdapter("x", { peft_type: "IA3", feedforward_modules: ["gate_proj"] }), isErr("IA3_CONFIG", "feedforward_modules", "subset"));
    assert.throws(() => m.addAdapter("x", { peft_type: "IA3", target_modules: ["lm_head"], feedforward_modules: [] }), isErr("IA3_UNKNOWN_TARGET", "lm_head"));
    assert.throws(() => m.addAdapter("x", { peft_type: "LN_TUNING", target_modules: ["q_proj"] }), isErr("LN_TUNING_NO_TARGET", "q_proj"));
    assert.throws(() => m.addAdapter("x", { peft_type: "BITFIT", bias: "none" }), isErr("BITFIT_CONFIG", "bias"));
    assert.throws(() => m.addAdapter("x", { peft_type: "LORA", use_dora: true, lora_alhpa: 3 }), isErr("LORA_CONFIG", "lora_alhpa"));
    m.addAdapter("i", { peft_type: "IA3" });
    assert.throws(() => m.setAdapters([{ name: "i", weight: 0.5 }]), isErr("UNSUPPORTED", "(IA)³"));
    // An (IA)³ config over LoRA's tensors: every tensor is named as unexpected.
    const dir = await Deno.makeTempDir();
    try {
      m.addAdapter("l", { r: 2, target_modules: ["k_proj"] });
      await m.saveAdapter("l", dir);
      const cfg = JSON.parse(await Deno.readTextFile(`${dir}/adapter_config.json`));
      await Deno.writeTextFile(`${dir}/adapter_config.json`, JSON.stringify({ peft_type: "IA3", target_modules: ["k_proj"], feedforward_modules: ["k_proj"], task_type: cfg.task_type }));
      await assert.rejects(m.loadAdapter("wrong", dir), isErr("ADAPTER_UNEXPECTED_TENSORS", "lora_A"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  } finally {
    m.close();
  }
  const q = await loadModel(STORIES, { gpu: await testGpu(), quantize: "nf4" });
  try {
    const before = q.gpu.memoryByCategory().lora ?? 0;
    assert.throws(() => q.addAdapter("d", { r: 4, use_dora: true }), isErr("UNSUPPORTED", "use_dora", "4-bit"));
    assert.throws(() => q.addAdapter("p", { peft_type: "PARTIAL", target_modules: ["q_proj"] }), isErr("UNSUPPORTED", "partial", "4-bit"));
    q.gpu.flush();
    assert.equal(q.gpu.memoryByCategory().lora ?? 0, before, "nothing half-made stays on the GPU");
    q.addAdapter("ia3", { peft_type: "IA3" }); // (IA)³ works on a 4-bit base
  } finally {
    q.close();
  }
});

Deno.test("methods: a training pass, an eval pass, decoding and merging leave no GPU memory behind, for every method", async () => {
  const m = await open();
  try {
    const batch = { B: 2, T: 8, inputs: Array.from({ length: 16 }, (_, i) => (i * 29 + 3) % 512), targets: Array.from({ length: 16 }, (_, i) => (i * 41 + 7) % 512) };
    const CONFIGS: Record<string, Record<string, unknown>> = {
      lora: { r: 4, target_modules: "all-linear" },
      dora: { r: 4, target_modules: "all-linear", use_dora: true },
      dora_dropout: { r: 4, target_modules: ["q_proj", "down_proj"], use_dora: true, lora_dropout: 0.1 },
      ia3: { peft_type: "IA3" },
      bitfit: { peft_type: "BITFIT" },
      ln_tuning: { peft_type: "LN_TUNING" },
      partial: { peft_type: "PARTIAL", target_modules: "all", layers_to_transform: [4] },
      prompt_tuning: { peft_type: "PROMPT_TUNING", num_virtual_tokens: 3 },
      p_tuning_lstm: { peft_type: "P_TUNING", num_virtual_tokens: 3, encoder_reparameterization_type: "LSTM", encoder_hidden_size: 16 },
      prefix_tuning: { peft_type: "PREFIX_TUNING", num_virtual_tokens: 3, prefix_projection: true, encoder_hidden_size: 16 },
      houlsby: { peft_type: "BOTTLENECK", config: "double_seq_bn", reduction_factor: 16 },
      mam: { peft_type: "HYBRID", components: { prefix: { peft_type: "PREFIX_TUNING", num_virtual_tokens: 3 }, adapter: { peft_type: "BOTTLENECK", config: "par_bn", reduction_factor: 8 } } },
    };
    const held = () => {
      const c = m.gpu.memoryByCategory();
      delete c.other; // the allocator's own small buffers (uniforms), reused
      delete c.kv_cache; // the model's, dropped when weights change (merge) and made again
      return c;
    };
    const before = held();
    for (const [name, cfg] of Object.entries(CONFIGS)) {
      const a = m.addAdapter(name, cfg, 2);
      lossAndGrads(m.llama, a.hooks(), batch, { seed: 1, gradScale: 1 / 16 }).release();
      evalLoss(m.llama, a.hooks(), batch).release();
      await m.complete("Once upon", { adapter: name, maxTokens: 3, temperature: 0 });
      if (a.method.merge) {
        await m.merge(name);
        await m.unmerge(name);
      }
      m.deleteAdapter(name);
      await m.gpu.sync();
      assert.deepEqual(held(), before, `${name}: GPU bytes by category after training, eval, decoding and merging, then deleting the adapter`);
    }
  } finally {
    m.close();
  }
});
