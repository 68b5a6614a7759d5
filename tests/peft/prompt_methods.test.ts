/**
 * The methods that add virtual tokens or modules: P-tuning's MLP and LSTM encoders (GPU gradients
 * equal the CPU reference model's, which match finite differences), cached decoding with a prefix
 * equal to recomputing it, hybrids, and a clear error for every bad size.
 */
import assert from "node:assert/strict";
import { loadModel, type Model } from "../../src/api/model.ts";
import { lossAndGrads } from "../../src/model/llama_train.ts";
import { referenceBackend, referenceLoss } from "../../src/model/llama_reference.ts";
import type { HostTensor } from "../../src/model/cpu_backend.ts";
import type { Hooks } from "../../src/model/sites.ts";
import { STORIES, testGpu, isErr } from "../helpers.ts";

async function open(): Promise<Model> {
  return await loadModel(STORIES, { gpu: await testGpu() });
}

const batch = { B: 2, T: 8, inputs: Array.from({ length: 16 }, (_, i) => (i * 29 + 3) % 512), targets: Array.from({ length: 16 }, (_, i) => (i * 41 + 7) % 512) };
const count = batch.targets.length;

Deno.test("P-tuning encoders (MLP, 2-layer bidirectional LSTM): GPU gradients equal the CPU reference's, which match finite differences", async () => {
  const m = await open();
  try {
    const host = new Map<string, Float32Array>();
    for (const [n, t] of m.llama.weights) host.set(n, await m.gpu.readF32(t));
    const be = referenceBackend(m.config, host);
    for (const [name, cfg] of [
      ["mlp", { peft_type: "P_TUNING", num_virtual_tokens: 4, encoder_hidden_size: 16 }],
      ["lstm", { peft_type: "P_TUNING", num_virtual_tokens: 3, encoder_reparameterization_type: "LSTM", encoder_hidden_size: 8 }],
    ] as const) {
      const a = m.addAdapter(name, cfg, 2);
      const slots = a.trainable();
      const t = lossAndGrads(m.llama, a.hooks(), batch, { seed: 1, gradScale: 1 / count });
      const gpuLoss = (await m.gpu.readF32(t)).reduce((s, v) => s + v, 0) / count;
      t.release();
      const grads = new Map<string, Float32Array>();
      const hooks: Hooks<HostTensor> = await a.hostHooks(1, grads);
      const cpuLoss = referenceLoss(m.config, be, hooks, batch, { grad: true });
      assert.ok(Math.abs(gpuLoss - cpuLoss) < 1e-4 * cpuLoss, `${name}: loss ${gpuLoss} vs CPU ${cpuLoss}`);
      let worst = 0;
      for (const s of slots) {
        const got = await m.gpu.readF32(s.grad), want = grads.get(s.key)!;
        let err = 0, norm = 0;
        for (let i = 0; i < got.length; i++) {
          err += (got[i] - want[i]) ** 2;
          norm += want[i] ** 2;
        }
        assert.ok(norm > 0, `${name} ${s.key}: zero gradient`);
        worst = Math.max(worst, Math.sqrt(err / norm));
      }
      assert.ok(worst < 1e-4, `${name}: GPU vs CPU gradients ${worst}`);
      // Central differences of the CPU reference loss on a few encoder entries.
      for (const key of slots.map((s) => s.key).filter((k) => /weight_hh_l1_reverse|mlp_head\.2\.weight|embedding/.test(k)).slice(0, 2)) {
        const p = a.params.get(key)!;
        const base = await m.gpu.readF32(p.value);
        for (const i of [0, Math.floor(base.length / 2)]) {
          const at = async (delta: number) => {
            const v = base.slice();
            v[i] += delta;
            m.gpu.write(p.value, v);
            const h = await a.hostHooks();
            return referenceLoss(m.config, be, h, batch);
          };
          const eps = 1e-2;
          const fd = (await at(eps) - await at(-eps)) / (2 * eps);
          m.gpu.write(p.value, base);
          const g = grads.get(key)![i];
          assert.ok(Math.abs(fd - g) <= 2e-2 * Math.max(1e-3, Math.abs(fd)) + 2e-4, `${name} ${key}[${i}]: grad ${g} vs finite difference ${fd}`);
        }
      }
      console.log(`  ${name}: loss ${gpuLoss.toFixed(5)}, GPU vs CPU gradients ${worst.toExponential(2)} over ${slots.length} tensors`);
    }
  } finally {
    m.close();
  }
});

Deno.test("virtual tokens: decoding from the cache (prefix written once) equals recomputing the whole sequence each step", async () => {
  const m = await open();
  try {
    m.addAdapter("prefix", { peft_type: "PREFIX_TUNING", num_virtual_tokens: 5, prefix_projection: true, encoder_hidden_size: 16 }, 4);
    m.addAdapter("prompt", { peft_type: "PROMPT_TUNING", num_virtual_tokens: 4 }, 5);
    m.addAdapter("mam", { peft_type: "HYBRID", components: { prefix: { peft_type: "PREFIX_TUNING", num_virtual_tokens: 3 }, adapter: { peft_type: "BOTTLENECK", config: "par_bn", init_weights: "bert" } } }, 6);
    const prompt = m.encodePrompt("Once upon a time");
    for (const name of ["prefix", "prompt", "mam"]) {
      const ids: number[] = [];
      for await (const p of m.generateStream(prompt, { adapter: name, maxTokens: 6, temperature: 0, topK: 1 })) if (p.id >= 0) ids.push(p.id);
      // Each generated id is the argmax of a fresh full forward over prompt + the ids before it.
      for (let i = 0; i < ids.length; i++) {
        const all = await m.logits([...prompt, ...ids.slice(0, i)], { adapter: name });
        const last = all[all.length - 1];
        assert.equal(last.indexOf(Math.max(...last)), ids[i], `${name}: token ${i}`);
      }
      // And the cached last-step logits equal the recomputed ones.
      const full = await m.logits([...prompt, ...ids], { adapter: name });
      const t = m.llama.forward(prompt, 0, { hooks: m.peft.hooksFor(name) });
      t.release();
      let pos = m.peft.hooksFor(name).virtualTokens! + prompt.length, last: Float32Array = new Float32Array();
      for (const id of ids) {
        const lt = m.llama.forward([id], pos++, { hooks: m.peft.hooksFor(name) });
        last = await m.gpu.readF32(lt);
        lt.release();
      }
      const want = full[full.length - 1];
      const d = Math.max(...last.map((v, i) => Math.abs(v - want[i])));
      assert.ok(d < 1e-4, `${name}: cached vs recomputed logits differ by ${d}`);
    }
  } finally {
    m.close();
  }
});

Deno.test("virtual tokens and modules: bad sizes, overflowing contexts and conflicts are clear errors", async () => {
  const m = await loadModel(STORIES, { gpu: await testGpu(), contextLength: 32 });
  try {
    assert.throws(() => m.addAdapter("x", { peft_type: "PROMPT_TUNING", num_virtual_tokens: 0 }), isErr("PROMPT_TUNING_CONFIG", "num_virtual_tokens"));
    assert.throws(() => m.addAdapter("x", { peft_type: "PREFIX_TUNING", num_virtual_tokens: 32 }), isErr("PREFIX_TUNING_CONFIG", "num_virtual_tokens", "context of 32"));
    assert.throws(
      () => m.addAdapter("x", { peft_type: "PROMPT_TUNING", num_virtual_tokens: 2, prompt_tuning_init: "TEXT", prompt_tuning_init_text: "Once upon a time" }),
      isErr("PROMPT_TUNING_CONFIG", "prompt_tuning_init_text", "num_virtual_tokens 2"),
    );
    assert.throws(() => m.addAdapter("x", { peft_type: "PREFIX_TUNING", num_virtual_tokens: 4, token_dim: 64 }), isErr("PREFIX_TUNING_CONFIG", "token_dim", "32"));
    assert.throws(() => m.addAdapter("x", { peft_type: "BOTTLENECK", config: "seq_bn", non_linearity: "gelu" }), isErr("BOTTLENECK_CONFIG", "non_linearity"));
    assert.throws(() => m.addAdapter("x", { peft_type: "BOTTLENECK", config: "nope" }), isErr("BOTTLENECK_CONFIG", "config", "par_bn"));
    m.addAdapter("p", { peft_type: "PROMPT_TUNING", num_virtual_tokens: 20 });
    m.addAdapter("q", { peft_type: "PREFIX_TUNING", num_virtual_tokens: 3 });
    const prompt = m.encodePrompt("Once upon a time, there was a little dog");
    assert.ok(prompt.length < 32 && prompt.length + 20 >= 32);
    await assert.rejects(m.complete(prompt, { adapter: "p", maxTokens: 2 }), isErr("CONTEXT_OVERFLOW", "20 virtual tokens"));
    await assert.rejects(m.complete(prompt, { adapters: [{ name: "p" }, { name: "q" }], maxTokens: 2 }), isErr("ADAPTER_CONFLICT", "virtual tokens"));
    // A prefix file made for another model (its width does not match this model's layers and heads).
    const dir = await Deno.makeTempDir();
    try {
      await m.saveAdapter("q", dir);
      const cfg = JSON.parse(await Deno.readTextFile(`${dir}/adapter_config.json`));
      await Deno.writeTextFile(`${dir}/adapter_config.json`, JSON.stringify({ ...cfg, num_layers: 7 }));
      await assert.rejects(m.loadAdapter("q2", dir), isErr("ADAPTER_BAD_CONFIG", "num_layers", "7", "this model has 5"));
      await Deno.writeTextFile(`${dir}/adapter_config.json`, JSON.stringify({ ...cfg, num_virtual_tokens: 4 }));
      await assert.rejects(m.loadAdapter("q3", dir), isErr("ADAPTER_SHAPE_MISMATCH", "prompt_embeddings"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  } finally {
    m.close();
  }
});
