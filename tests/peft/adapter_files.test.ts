/**
 * PEFT adapter directories against a model: PEFT's key names, keys with an adapter name or
 * without the base_model prefix, q/k rows in HF order on disk, and one clear error (naming the
 * file and the key) for every config field, shape, missing or unexpected tensor — with nothing
 * half-loaded left on the GPU.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type Model } from "../../src/api/model.ts";
import { readSafetensors, writeSafetensors } from "../../src/io/safetensors.ts";
import { linearShape, permuteQK } from "../../src/model/config.ts";
import { matchKeys } from "../../src/peft/keys.ts";
import { loraKeys } from "../../src/peft/lora/method.ts";
import { randn, STORIES, testGpu, isErr } from "../helpers.ts";

const R = 4;

function loraConfig(over: Record<string, unknown> = {}) {
  return {
    peft_type: "LORA", r: R, lora_alpha: 8, lora_dropout: 0.05, target_modules: ["q_proj", "v_proj", "down_proj"], bias: "none",
    use_rslora: false, use_dora: false, task_type: "CAUSAL_LM", base_model_name_or_path: "stories260K", fan_in_fan_out: false,
    init_lora_weights: true, modules_to_save: null, inference_mode: true, revision: null, ...over,
  };
}

async function withModel(fn: (m: Model, dir: string) => Promise<void>) {
  const m = await loadModel(STORIES, { gpu: await testGpu() });
  const dir = await mkdtemp(join(tmpdir(), "peft-files-"));
  try {
    await fn(m, dir);
  } finally {
    m.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Writes an adapter dir with random LoRA tensors for the given layers/modules (HF order). */
async function writeLora(dir: string, config: Record<string, unknown>, modules: string[], layers: number[], extra: { name: string; shape: number[]; data: Float32Array }[] = []) {
  const cfgModel = { dim: 64, hiddenDim: 172, nHeads: 8, nKvHeads: 4, headDim: 8 } as Parameters<typeof linearShape>[0];
  const tensors = [];
  let seed = 1;
  for (const layer of layers) {
    for (const mod of modules) {
      const [out, inp] = linearShape(cfgModel, mod);
      const k = loraKeys({ layer, module: mod });
      tensors.push({ name: k.A, dtype: "F32" as const, shape: [R, inp], data: randn(R * inp, seed++) });
      tensors.push({ name: k.B, dtype: "F32" as const, shape: [out, R], data: randn(out * R, seed++) });
      if (config.use_dora) tensors.push({ name: k.m, dtype: "F32" as const, shape: [out], data: randn(out, seed++) });
    }
  }
  for (const e of extra) tensors.push({ ...e, dtype: "F32" as const });
  await writeFile(join(dir, "adapter_config.json"), JSON.stringify(config));
  await writeSafetensors(join(dir, "adapter_model.safetensors"), tensors);
}

Deno.test("adapter files: PEFT key names, and keys with an adapter name or without the prefix match", () => {
  const k = loraKeys({ layer: 12, module: "down_proj" });
  assert.equal(k.A, "base_model.model.model.layers.12.mlp.down_proj.lora_A.weight");
  assert.equal(loraKeys({ layer: 0, module: "q_proj" }).B, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  assert.equal(loraKeys({ layer: 3, module: "q_proj" }).m, "base_model.model.model.layers.3.self_attn.q_proj.lora_magnitude_vector");
  assert.throws(() => loraKeys({ layer: 0, module: "lm_head" }), isErr("UNKNOWN_MODULE", "lm_head"));
  const want = [loraKeys({ layer: 3, module: "v_proj" }).B, loraKeys({ layer: 1, module: "o_proj" }).m];
  const { found, unexpected } = matchKeys(want, [
    "model.layers.3.self_attn.v_proj.lora_B.default.weight",
    "base_model.model.model.layers.1.self_attn.o_proj.lora_magnitude_vector.default.weight",
    "base_model.model.lm_head.weight",
  ]);
  assert.equal(found.get(want[0]), "model.layers.3.self_attn.v_proj.lora_B.default.weight");
  assert.equal(found.get(want[1]), "base_model.model.model.layers.1.self_attn.o_proj.lora_magnitude_vector.default.weight");
  assert.deepEqual(unexpected, ["base_model.model.lm_head.weight"]);
  assert.throws(() => matchKeys(want, [want[0], want[0].replace("lora_B.weight", "lora_B.default.weight")]), isErr("ADAPTER_BAD_TENSOR", "same parameter"));
});

Deno.test("adapter files: save -> load is bit exact (LoRA, DoRA), q/k rows in HF order on disk", async () => {
  await withModel(async (m, root) => {
    for (const dora of [false, true]) {
      const name = dora ? "dora" : "lora";
      const a = m.addAdapter(name, { r: R, lora_alpha: 8, target_modules: "all-linear", use_dora: dora, init_lora_weights: false }, 5);
      const dir = join(root, name, "nested");
      await m.saveAdapter(name, dir);
      const json = JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8"));
      assert.equal(json.peft_type, "LORA");
      assert.equal(json.use_dora, dora);
      const st = await readSafetensors(join(dir, "adapter_model.safetensors"));
      const kq = loraKeys({ layer: 2, module: "q_proj" });
      assert.equal(st.tensors.get(kq.A)!.dtype, "F32");
      assert.equal(st.metadata.format, "pt");
      // On disk q's lora_B rows are HF (rotate-half) order: our GGUF-order rows permuted.
      const Bgguf = await m.gpu.readF32(a.params.get(kq.B)!.value);
      assert.deepEqual(await st.readF32(kq.B), permuteQK(Bgguf, 64, R, 8, "gguf_to_hf"));
      await st.close();
      const b = await m.loadAdapter(`${name}2`, dir);
      for (const [k, p] of a.params) assert.deepEqual(await m.gpu.readF32(b.params.get(k)!.value), await m.gpu.readF32(p.value), k);
      assert.equal(b.trainableParameters, a.trainableParameters);
    }
  });
});

Deno.test("adapter files: every bad config field, shape, missing or unexpected tensor is one clear error, nothing stays on the GPU", async () => {
  await withModel(async (m, root) => {
    const loraBytes = () => m.gpu.memoryByCategory().lora ?? 0;
    const before = loraBytes();
    let n = 0;
    const expectLoad = async (config: Record<string, unknown>, modules: string[], layers: number[], code: string, ...parts: string[]) => {
      const dir = join(root, `case${n++}`);
      await Deno.mkdir(dir);
      await writeLora(dir, config, modules, layers);
      await assert.rejects(m.loadAdapter(`c${n}`, dir), isErr(code, ...parts), JSON.stringify(config));
    };
    const cfgFile = "adapter_config.json";
    const configCases: [Record<string, unknown>, string, string][] = [
      [{ r: 0 }, "ADAPTER_BAD_CONFIG", "r must be a positive integer"],
      [{ r: "8" }, "ADAPTER_BAD_CONFIG", "r must be a positive integer"],
      [{ lora_alpha: "16" }, "ADAPTER_BAD_CONFIG", "lora_alpha"],
      [{ lora_dropout: 1.5 }, "ADAPTER_BAD_CONFIG", "lora_dropout"],
      [{ bias: "some" }, "ADAPTER_BAD_CONFIG", "bias"],
      [{ use_dora: "yes" }, "ADAPTER_BAD_CONFIG", "use_dora must be true or false"],
      [{ fan_in_fan_out: true }, "ADAPTER_BAD_CONFIG", "fan_in_fan_out"],
      [{ layers_to_transform: [-1] }, "ADAPTER_BAD_CONFIG", "layers_to_transform"],
      [{ modules_to_save: ["lm_head"] }, "ADAPTER_BAD_CONFIG", "modules_to_save"],
      [{ rank_pattern: { q_proj: 8 } }, "ADAPTER_BAD_CONFIG", "rank_pattern"],
      [{ init_lora_weights: 3 }, "ADAPTER_BAD_CONFIG", "init_lora_weights"],
      [{ peft_type: "LOKR" }, "ADAPTER_UNSUPPORTED", "LOKR"],
      [{ peft_type: "FOO" }, "ADAPTER_BAD_CONFIG", "unknown peft_type"],
      [{ target_modules: ["rotary_proj"] }, "ADAPTER_BAD_CONFIG", "rotary_proj"],
    ];
    for (const [over, code, part] of configCases) await expectLoad(loraConfig(over), ["q_proj"], [0], code, cfgFile, part);
    // Tensors the config does not target are refused with their names (finding: silently lost tensors).
    await expectLoad(loraConfig({ target_modules: ["q_proj"] }), ["q_proj", "v_proj"], [0, 1, 2, 3, 4], "ADAPTER_UNEXPECTED_TENSORS", "v_proj.lora_A");
    await expectLoad(loraConfig({ target_modules: ["q_proj"], layers_to_transform: [0] }), ["q_proj"], [0, 1, 2, 3, 4], "ADAPTER_UNEXPECTED_TENSORS", "layers.1.");
    await expectLoad(loraConfig({ target_modules: ["q_proj", "k_proj"] }), ["q_proj"], [0, 1, 2, 3, 4], "ADAPTER_MISSING_TENSORS", "k_proj.lora_A");
    await expectLoad(loraConfig({ target_modules: ["q_proj"], r: 8 }), ["q_proj"], [0, 1, 2, 3, 4], "ADAPTER_SHAPE_MISMATCH", "[4,64]", "[8,64]");
    // A DoRA config without magnitudes, a stray magnitude without use_dora.
    const noMag = join(root, "nomag");
    await Deno.mkdir(noMag);
    await writeLora(noMag, loraConfig({ target_modules: ["v_proj"], use_dora: true }), [], []);
    await writeLora(noMag, loraConfig({ target_modules: ["v_proj"], use_dora: true }), ["v_proj"], [0, 1, 2, 3, 4]);
    const st = await readSafetensors(join(noMag, "adapter_model.safetensors"));
    const kept = [];
    for (const [k, t] of st.tensors) if (!k.endsWith("magnitude_vector")) kept.push({ name: k, dtype: "F32" as const, shape: t.shape, data: await st.readF32(k) });
    await st.close();
    await writeSafetensors(join(noMag, "adapter_model.safetensors"), kept);
    await assert.rejects(m.loadAdapter("nomag", noMag), isErr("ADAPTER_MISSING_TENSORS", "lora_magnitude_vector"));
    // Non-finite values are refused at load, naming the tensor.
    const nan = join(root, "nan");
    await Deno.mkdir(nan);
    const bad = randn(32 * R, 3);
    bad[5] = NaN;
    const tensors = [];
    for (let l = 0; l < 5; l++) {
      const k = loraKeys({ layer: l, module: "v_proj" });
      tensors.push({ name: k.A, dtype: "F32" as const, shape: [R, 64], data: randn(R * 64, l) });
      tensors.push({ name: k.B, dtype: "F32" as const, shape: [32, R], data: l === 2 ? bad : randn(32 * R, l + 9) });
    }
    await writeFile(join(nan, "adapter_config.json"), JSON.stringify(loraConfig({ target_modules: ["v_proj"] })));
    await writeSafetensors(join(nan, "adapter_model.safetensors"), tensors);
    await assert.rejects(m.loadAdapter("nan", nan), isErr("ADAPTER_BAD_TENSOR", "layers.2.self_attn.v_proj.lora_B", "non-finite"));
    m.gpu.flush();
    assert.equal(loraBytes(), before, "nothing half-loaded stays on the GPU");
    assert.equal(m.adapters.size, 0);
  });
});

Deno.test("adapter files: the q/k permutation equals llama.cpp's permute (reshape(n_head, 2, D/2, cols).swapaxes(1, 2))", async () => {
  // The fixture holds inputs and outputs of convert_hf_to_gguf.py's own permute, run with torch.
  const st = await readSafetensors(new URL("../fixtures/safetensors/llamacpp_permute.safetensors", import.meta.url).pathname);
  try {
    for (const [base, rows, cols] of [["q", 16, 3], ["k", 8, 5], ["mag", 16, 1]] as const) {
      const hf = await st.readF32(`${base}_hf`);
      const gguf = await st.readF32(`${base}_gguf`);
      assert.deepEqual(permuteQK(hf, rows, cols, 8, "hf_to_gguf"), gguf, base);
      assert.deepEqual(permuteQK(gguf, rows, cols, 8, "gguf_to_hf"), hf, base);
    }
  } finally {
    await st.close();
  }
});
