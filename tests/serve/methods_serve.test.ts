/**
 * The server serves every PEFT method per request, and weighted combinations (`lora: [{id,
 * scale}]`, llama.cpp's field with adapter names), each equal to the same generation in a script.
 */
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../src/api/model.ts";
import { createApp } from "../../src/serve/app.ts";
import { ModelEngine } from "../../src/serve/engine.ts";
import { loraBs, randn, STORIES, testGpu } from "../helpers.ts";

const FIXTURES = new URL("../fixtures/methods/", import.meta.url).pathname;
const PROMPT = "Once upon a time";
const N = 8;

Deno.test("server: every method per request, and weighted per-request combinations, equal the script's text", async () => {
  const m = await loadModel(STORIES, { gpu: await testGpu() });
  const dir = await mkdtemp(join(tmpdir(), "serve-methods-"));
  try {
    // LoRA made here (random B), the others from the PyTorch fixtures, partial with moved weights.
    const lora = m.addAdapter("lora", { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"] }, 4);
    for (const B of loraBs(lora)) m.gpu.write(B, randn(B.size, 5, 0.1));
    for (const f of ["dora", "ia3", "bitfit", "ln_tuning"]) await m.loadAdapter(f, `${FIXTURES}${f}`);
    const partial = m.addAdapter("partial", { peft_type: "PARTIAL", target_modules: ["down_proj"], layers_to_transform: [3, 4] });
    for (const p of partial.params.values()) m.gpu.write(p.value, (await m.gpu.readF32(p.value)).map((v, i) => v * (1 + 0.3 * Math.sin(i))));
    const names = ["lora", "dora", "ia3", "bitfit", "ln_tuning", "partial"];
    const expected: Record<string, string> = {};
    for (const n of names) {
      expected[n] = await m.complete(PROMPT, { adapter: n, maxTokens: N, temperature: 0 });
      await m.saveAdapter(n, join(dir, n));
      m.deleteAdapter(n);
    }
    // The combination a script would run, and the server's `lora` field for it.
    m.addAdapter("w1", { r: 2, lora_alpha: 4, target_modules: ["o_proj"] }, 7);
    for (const B of loraBs(m.adapter("w1"))) m.gpu.write(B, randn(B.size, 8, 0.2));
    await m.saveAdapter("w1", join(dir, "w1"));
    await m.loadAdapter("lora", join(dir, "lora"));
    const combo = [{ name: "lora", weight: 0.5 }, { name: "w1", weight: -1.5 }];
    const comboText = await m.complete(PROMPT, { adapters: combo, maxTokens: N, temperature: 0 });
    for (const n of ["lora", "w1"]) m.deleteAdapter(n);

    const engine = new ModelEngine(m, { modelId: "stories260K", maxQueue: 8 });
    for (const n of [...names, "w1"]) engine.registry.register(n, join(dir, n));
    const app = createApp(engine, { logError: () => {} });
    const post = async (body: Record<string, unknown>) => {
      const r = await app.request("/v1/completions", {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: PROMPT, max_tokens: N, temperature: 0, ...body }),
      });
      return { status: r.status, json: await r.json() };
    };
    for (const n of names) {
      const r = await post({ model: `stories260K:${n}` });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      assert.equal(r.json.choices[0].text, expected[n], n);
    }
    const models = await (await app.request("/v1/models")).json();
    const types = Object.fromEntries(models.data.filter((x: { adapter?: unknown }) => x.adapter).map((x: { adapter: { id: string; type: string } }) => [x.adapter.id, x.adapter.type]));
    assert.equal(types.ia3, "IA3");
    assert.equal(types.ln_tuning, "LN_TUNING");
    const r = await post({ model: "stories260K", lora: combo.map((c) => ({ id: c.name, scale: c.weight })) });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.choices[0].text, comboText, "the server's weighted combination equals the script's");
    // A weight on a method whose effect is not a delta, an unknown id, both model:adapter and lora.
    const bad1 = await post({ model: "stories260K", lora: [{ id: "ia3", scale: 0.5 }] });
    assert.equal(bad1.status, 400);
    assert.match(bad1.json.error.message, /\(IA\)³/);
    const bad2 = await post({ model: "stories260K", lora: [{ id: "nope", scale: 1 }] });
    assert.equal(bad2.status, 404);
    const bad3 = await post({ model: "stories260K:lora", lora: [{ id: "w1", scale: 1 }] });
    assert.equal(bad3.status, 400);
    await engine.idle();
  } finally {
    m.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server: prompt tuning, prefix tuning and bottleneck adapters per request equal the script; virtual tokens count against the context", async () => {
  // A short context keeps the overflow prompt cheap to prefill on lavapipe.
  const m = await loadModel(STORIES, { gpu: await testGpu(), contextLength: 48 });
  try {
    const names = ["prompt_tuning", "prefix_tuning", "houlsby"];
    const expected: Record<string, string> = {};
    const base = await m.complete(PROMPT, { maxTokens: N, temperature: 0 });
    for (const n of names) {
      await m.loadAdapter(n, `${FIXTURES}${n}`);
      expected[n] = await m.complete(PROMPT, { adapter: n, maxTokens: N, temperature: 0 });
      m.deleteAdapter(n);
    }
    const engine = new ModelEngine(m, { modelId: "stories260K", maxQueue: 8 });
    for (const n of names) engine.registry.register(n, `${FIXTURES}${n}`);
    const app = createApp(engine, { logError: () => {} });
    const post = async (body: Record<string, unknown>) => {
      const r = await app.request("/v1/completions", {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: PROMPT, max_tokens: N, temperature: 0, ...body }),
      });
      return { status: r.status, json: await r.json() };
    };
    for (const n of names) {
      const r = await post({ model: `stories260K:${n}` });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      assert.equal(r.json.choices[0].text, expected[n], n);
      assert.equal(r.json.usage.prompt_tokens, m.encodePrompt(PROMPT).length, "virtual tokens are not prompt tokens");
    }
    // Mixed in one batch: each request keeps its own method.
    const mixed = await Promise.all(["", ...names].map((n) => post({ model: n ? `stories260K:${n}` : "stories260K" })));
    assert.deepEqual(mixed.map((r) => r.json.choices[0].text), [base, ...names.map((n) => expected[n])]);
    // A prompt that fits the context alone but not after 6 virtual tokens: a 400 naming them.
    const ctx = m.config.contextLength;
    const ids = m.encodePrompt(PROMPT);
    const long = Array.from({ length: ctx - 3 }, (_, i) => ids[1 + (i % (ids.length - 1))]);
    const okBase = await post({ model: "stories260K", prompt: long, max_tokens: 1 });
    assert.equal(okBase.status, 200, JSON.stringify(okBase.json));
    for (const n of ["prompt_tuning", "prefix_tuning"]) {
      const r = await post({ model: `stories260K:${n}`, prompt: long, max_tokens: 1 });
      assert.equal(r.status, 400, JSON.stringify(r.json));
      assert.match(r.json.error.message, /6 virtual tokens/);
    }
    await engine.idle();
  } finally {
    m.close();
  }
});
