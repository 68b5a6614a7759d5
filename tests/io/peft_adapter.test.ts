import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PeftError } from "../../src/errors.ts";
import {
  type AdapterTensor,
  doraMagnitudeKey,
  loadAdapterDir,
  loraBToGguf,
  loraBToHf,
  loraKey,
  parseLoraKey,
  type PeftAdapterConfig,
  saveAdapterDir,
  validateAdapterAgainst,
  validateAdapterConfig,
} from "../../src/io/peft_adapter.ts";
import { readSafetensors, writeSafetensors } from "../../src/io/safetensors.ts";
import { type LlamaConfig, linearShape, LINEAR_MODULES } from "../../src/model/config.ts";
import { randn } from "../helpers.ts";

/** stories260K's shape. */
const MODEL: LlamaConfig = {
  architecture: "llama", vocabSize: 512, dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, headDim: 8,
  ropeDim: 8, ropeBase: 10000, normEps: 1e-5, contextLength: 2048, tiedEmbeddings: true,
};
const R = 4;

function loraConfig(over: Partial<PeftAdapterConfig> = {}): PeftAdapterConfig {
  return {
    peft_type: "LORA", r: R, lora_alpha: 8, lora_dropout: 0.05, target_modules: ["q_proj", "v_proj", "down_proj"],
    bias: "none", use_rslora: false, use_dora: false, task_type: "CAUSAL_LM", base_model_name_or_path: "stories260K",
    fan_in_fan_out: false, init_lora_weights: true, modules_to_save: null, inference_mode: true, revision: null, ...over,
  };
}

function loraTensors(modules: string[], layers: number[], dora = false): Map<string, AdapterTensor> {
  const m = new Map<string, AdapterTensor>();
  let seed = 1;
  for (const layer of layers) {
    for (const mod of modules) {
      const [out, inp] = linearShape(MODEL, mod);
      m.set(loraKey(mod, layer, "lora_A"), { shape: [R, inp], data: randn(R * inp, seed++) });
      m.set(loraKey(mod, layer, "lora_B"), { shape: [out, R], data: randn(out * R, seed++) });
      if (dora) m.set(doraMagnitudeKey(mod, layer), { shape: [out], data: randn(out, seed++) });
    }
  }
  return m;
}

async function withTmp(fn: (dir: string) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), "peft-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function isErr(code: string, ...parts: string[]) {
  return (e: unknown) => {
    assert.ok(e instanceof PeftError, `expected PeftError, got ${e}`);
    assert.equal(e.code, code, e.message);
    for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" should mention "${p}"`);
    return true;
  };
}

Deno.test("peft adapter: PEFT key names and their parser", () => {
  assert.equal(loraKey("q_proj", 0, "lora_A"), "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  assert.equal(loraKey("down_proj", 12, "lora_B"), "base_model.model.model.layers.12.mlp.down_proj.lora_B.weight");
  assert.equal(loraKey("attn_k", 1, "lora_B"), "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight", "GGUF module names accepted");
  assert.equal(doraMagnitudeKey("q_proj", 3), "base_model.model.model.layers.3.self_attn.q_proj.lora_magnitude_vector");
  assert.throws(() => loraKey("lm_head", 0, "lora_A"), isErr("UNKNOWN_MODULE", "lm_head"));
  for (const mod of LINEAR_MODULES) {
    for (const part of ["lora_A", "lora_B"] as const) assert.deepEqual(parseLoraKey(loraKey(mod, 7, part)), { layer: 7, module: mod, part });
    assert.deepEqual(parseLoraKey(doraMagnitudeKey(mod, 2)), { layer: 2, module: mod, part: "lora_magnitude_vector" });
  }
  const expected = { layer: 3, module: "v_proj", part: "lora_B" };
  assert.deepEqual(parseLoraKey("base_model.model.model.layers.3.self_attn.v_proj.lora_B.default.weight"), expected);
  assert.deepEqual(parseLoraKey("model.layers.3.self_attn.v_proj.lora_B.weight"), expected);
  const mag = { layer: 1, module: "o_proj", part: "lora_magnitude_vector" };
  assert.deepEqual(parseLoraKey("base_model.model.model.layers.1.self_attn.o_proj.lora_magnitude_vector.default.weight"), mag);
  assert.deepEqual(parseLoraKey("base_model.model.model.layers.1.self_attn.o_proj.lora_magnitude_vector.weight"), mag);
  assert.equal(parseLoraKey("base_model.model.lm_head.weight"), null);
  assert.equal(parseLoraKey("base_model.model.model.layers.x.self_attn.q_proj.lora_A.weight"), null);
  assert.equal(parseLoraKey("base_model.model.model.layers.0.self_attn.q_proj.weight"), null);
});

Deno.test("peft adapter: save -> load round trip is bit exact (LoRA and DoRA)", async () => {
  await withTmp(async (root) => {
    for (const dora of [false, true]) {
      const dir = join(root, dora ? "dora" : "lora", "nested"); // mkdir -p
      const config = loraConfig({ use_dora: dora });
      const tensors = loraTensors(["q_proj", "v_proj", "down_proj"], [0, 4], dora);
      await saveAdapterDir(dir, config, tensors);
      const loaded = await loadAdapterDir(dir);
      assert.deepEqual(loaded.config, config);
      assert.deepEqual([...loaded.tensors.keys()].sort(), [...tensors.keys()].sort());
      for (const [k, t] of tensors) {
        assert.deepEqual(loaded.tensors.get(k)!.shape, t.shape, k);
        assert.deepEqual(loaded.tensors.get(k)!.data, t.data, k);
      }
      validateAdapterAgainst(MODEL, loaded, dir);
      // On disk: PEFT's snake_case config and F32 safetensors with PEFT key names.
      const json = JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8"));
      assert.equal(json.lora_alpha, 8);
      assert.deepEqual(json.target_modules, ["q_proj", "v_proj", "down_proj"]);
      const st = await readSafetensors(join(dir, "adapter_model.safetensors"));
      assert.equal(st.tensors.get(loraKey("q_proj", 0, "lora_A"))!.dtype, "F32");
      assert.equal(st.metadata.format, "pt");
      await st.close();
    }
  });
});

Deno.test("peft adapter: loads keys with the adapter name or without the base_model prefix, and f16 tensors", async () => {
  await withTmp(async (dir) => {
    await writeFile(join(dir, "adapter_config.json"), JSON.stringify(loraConfig({ target_modules: "q_proj", use_dora: true })));
    const a = randn(R * 64, 1), b = randn(64 * R, 2);
    await writeSafetensors(join(dir, "adapter_model.safetensors"), [
      { name: "base_model.model.model.layers.2.self_attn.q_proj.lora_A.default.weight", dtype: "F32", shape: [R, 64], data: a },
      { name: "model.layers.2.self_attn.q_proj.lora_B.weight", dtype: "F32", shape: [64, R], data: b },
      { name: "base_model.model.model.layers.2.self_attn.q_proj.lora_magnitude_vector.default.weight", dtype: "F16", shape: [64], data: new Uint16Array(64).fill(0x3c00) },
    ]);
    const loaded = await loadAdapterDir(dir);
    assert.deepEqual(loaded.tensors.get(loraKey("q_proj", 2, "lora_A"))!.data, a);
    assert.deepEqual(loaded.tensors.get(loraKey("q_proj", 2, "lora_B"))!.data, b);
    assert.deepEqual([...loaded.tensors.get(doraMagnitudeKey("q_proj", 2))!.data], new Array(64).fill(1));
    validateAdapterAgainst(MODEL, loaded, dir);
  });
});

Deno.test("peft adapter: every malformed directory gives its error", async () => {
  await withTmp(async (root) => {
    const missing = join(root, "nope");
    await assert.rejects(loadAdapterDir(missing), isErr("ADAPTER_NOT_FOUND", missing));
    const file = join(root, "file");
    await writeFile(file, "x");
    await assert.rejects(loadAdapterDir(file), isErr("ADAPTER_NOT_FOUND", file));

    const dir = join(root, "a");
    await mkdir(dir);
    await assert.rejects(loadAdapterDir(dir), isErr("ADAPTER_NOT_FOUND", "adapter_config.json"));
    await writeFile(join(dir, "adapter_config.json"), "{ r: 8,");
    await assert.rejects(loadAdapterDir(dir), isErr("ADAPTER_BAD_CONFIG", join(dir, "adapter_config.json"), "JSON"));
    await writeFile(join(dir, "adapter_config.json"), JSON.stringify(loraConfig({ r: 0 })));
    await assert.rejects(loadAdapterDir(dir), isErr("ADAPTER_BAD_CONFIG", "adapter_config.json", "r must be a positive integer"));
    await writeFile(join(dir, "adapter_config.json"), JSON.stringify(loraConfig()));
    await assert.rejects(loadAdapterDir(dir), isErr("ADAPTER_NOT_FOUND", "adapter_model.safetensors"));
    await writeFile(join(dir, "adapter_model.bin"), new Uint8Array([0x80, 0x02]));
    await assert.rejects(loadAdapterDir(dir), isErr("ADAPTER_UNSUPPORTED_FORMAT", "adapter_model.bin", "unsupported", "convert", "safetensors"));
    await writeFile(join(dir, "adapter_model.safetensors"), new Uint8Array([1, 2, 3]));
    await assert.rejects(loadAdapterDir(dir), isErr("SAFETENSORS_TRUNCATED", join(dir, "adapter_model.safetensors")));
    await writeSafetensors(join(dir, "adapter_model.safetensors"), [
      { name: loraKey("q_proj", 0, "lora_A"), dtype: "I32", shape: [2], data: new Int32Array(2) },
    ]);
    await assert.rejects(loadAdapterDir(dir), isErr("ADAPTER_BAD_TENSOR", "q_proj.lora_A", "I32"));
    await writeSafetensors(join(dir, "adapter_model.safetensors"), [
      { name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", dtype: "F32", shape: [1], data: new Float32Array(1) },
      { name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", dtype: "F32", shape: [1], data: new Float32Array(1) },
    ]);
    await assert.rejects(loadAdapterDir(dir), isErr("ADAPTER_BAD_TENSOR", "duplicates"));
  });
});

Deno.test("peft adapter: saving into an unwritable place is a clear error", async () => {
  await withTmp(async (root) => {
    const blocker = join(root, "blocker");
    await writeFile(blocker, "a file, not a directory");
    const dir = join(blocker, "adapter");
    await assert.rejects(saveAdapterDir(dir, loraConfig(), loraTensors(["q_proj"], [0])), isErr("WRITE_FAILED", dir));
    const ro = join(root, "ro");
    await mkdir(ro);
    await chmod(ro, 0o500);
    // root ignores permission bits; only assert when the directory really is read-only.
    const probe = await writeFile(join(ro, "probe"), "x").then(() => true, () => false);
    if (!probe) await assert.rejects(saveAdapterDir(ro, loraConfig(), loraTensors(["q_proj"], [0])), isErr("WRITE_FAILED", ro));
    await chmod(ro, 0o700);
    await assert.rejects(
      saveAdapterDir(join(root, "x"), loraConfig(), new Map([["k", { shape: [2, 2], data: new Float32Array(3) }]])),
      isErr("ADAPTER_SHAPE_MISMATCH", "k"),
    );
  });
});

Deno.test("peft adapter: validateAdapterConfig names each bad field", () => {
  const f = "dir/adapter_config.json";
  const bad: [Record<string, unknown>, string, string][] = [
    [{ r: 0 }, "ADAPTER_BAD_CONFIG", "r must be a positive integer"],
    [{ r: 1.5 }, "ADAPTER_BAD_CONFIG", "r must be a positive integer"],
    [{ r: "8" }, "ADAPTER_BAD_CONFIG", "r must be a positive integer"],
    [{ r: undefined }, "ADAPTER_BAD_CONFIG", "r is missing"],
    [{ lora_alpha: "16" }, "ADAPTER_BAD_CONFIG", "lora_alpha must be a number"],
    [{ lora_dropout: 1.5 }, "ADAPTER_BAD_CONFIG", "lora_dropout"],
    [{ peft_type: "IA3" }, "ADAPTER_UNSUPPORTED", "peft_type IA3"],
    [{ peft_type: "PREFIX_TUNING" }, "ADAPTER_UNSUPPORTED", "PREFIX_TUNING"],
    [{ peft_type: "FOO" }, "ADAPTER_BAD_CONFIG", "unknown peft_type"],
    [{ peft_type: 3 }, "ADAPTER_BAD_CONFIG", "peft_type must be a string"],
    [{ target_modules: 5 }, "ADAPTER_BAD_CONFIG", "target_modules"],
    [{ target_modules: [] }, "ADAPTER_BAD_CONFIG", "target_modules is empty"],
    [{ target_modules: ["q_proj", 1] }, "ADAPTER_BAD_CONFIG", "target_modules"],
    [{ bias: "some" }, "ADAPTER_BAD_CONFIG", "bias"],
    [{ use_dora: "yes" }, "ADAPTER_BAD_CONFIG", "use_dora must be true or false"],
    [{ use_rslora: 1 }, "ADAPTER_BAD_CONFIG", "use_rslora"],
    [{ fan_in_fan_out: true }, "ADAPTER_UNSUPPORTED", "fan_in_fan_out"],
    [{ layers_to_transform: [-1] }, "ADAPTER_BAD_CONFIG", "layers_to_transform"],
    [{ layers_to_transform: "0" }, "ADAPTER_BAD_CONFIG", "layers_to_transform"],
    [{ modules_to_save: ["lm_head"] }, "ADAPTER_UNSUPPORTED", "modules_to_save"],
    [{ modules_to_save: "lm_head" }, "ADAPTER_BAD_CONFIG", "modules_to_save"],
    [{ rank_pattern: { q_proj: 8 } }, "ADAPTER_UNSUPPORTED", "rank_pattern"],
    [{ init_lora_weights: 3 }, "ADAPTER_BAD_CONFIG", "init_lora_weights"],
    [{ base_model_name_or_path: 3 }, "ADAPTER_BAD_CONFIG", "base_model_name_or_path"],
  ];
  for (const [over, code, part] of bad) {
    assert.throws(() => validateAdapterConfig({ ...loraConfig(), ...over }, f), isErr(code, f, part), JSON.stringify(over));
  }
  assert.throws(() => validateAdapterConfig([], f), isErr("ADAPTER_BAD_CONFIG", f, "array"));
  assert.throws(() => validateAdapterConfig(null, f), isErr("ADAPTER_BAD_CONFIG", f, "null"));
  // Valid variants, extra keys kept as they are.
  for (const over of [
    { target_modules: "all-linear" }, { layers_to_transform: 3 }, { layers_to_transform: [0, 2] }, { layers_to_transform: null },
    { init_lora_weights: "gaussian" }, { peft_type: "lora" }, { rank_pattern: {}, alpha_pattern: {} }, { megatron_config: null },
  ]) {
    const cfg = { ...loraConfig(), ...over };
    assert.deepEqual(validateAdapterConfig(cfg, f), cfg);
  }
});

Deno.test("peft adapter: validateAdapterAgainst catches wrong shapes, layers, missing halves and stray tensors", () => {
  const dir = "some/adapter";
  const good = () => ({ config: loraConfig(), tensors: loraTensors(["q_proj", "k_proj", "o_proj", "gate_proj", "down_proj"], [0, 4]) });
  validateAdapterAgainst(MODEL, good(), dir);

  const a = good();
  a.tensors.set(loraKey("k_proj", 4, "lora_A"), { shape: [R, 63], data: new Float32Array(R * 63) });
  assert.throws(() => validateAdapterAgainst(MODEL, a, dir), isErr("ADAPTER_SHAPE_MISMATCH", loraKey("k_proj", 4, "lora_A"), "[4,63]", "expected [4,64]", dir));

  const b = good();
  b.tensors.set(loraKey("k_proj", 0, "lora_B"), { shape: [64, R], data: new Float32Array(64 * R) }); // k has 4 kv heads * 8 = 32 rows
  assert.throws(() => validateAdapterAgainst(MODEL, b, dir), isErr("ADAPTER_SHAPE_MISMATCH", "k_proj.lora_B", "[64,4]", "expected [32,4]"));

  const c = good();
  c.tensors.set(loraKey("q_proj", 5, "lora_A"), { shape: [R, 64], data: new Float32Array(R * 64) });
  assert.throws(() => validateAdapterAgainst(MODEL, c, dir), isErr("ADAPTER_SHAPE_MISMATCH", "layers.5.", "5 layers"));

  const d = good();
  d.tensors.delete(loraKey("gate_proj", 4, "lora_B"));
  assert.throws(() => validateAdapterAgainst(MODEL, d, dir), isErr("ADAPTER_SHAPE_MISMATCH", loraKey("gate_proj", 4, "lora_B"), "missing"));

  const e = good();
  e.tensors.set("base_model.model.lm_head.weight", { shape: [512, 64], data: new Float32Array(512 * 64) });
  assert.throws(() => validateAdapterAgainst(MODEL, e, dir), isErr("ADAPTER_UNSUPPORTED", "lm_head"));

  const f = good();
  f.tensors.set("base_model.model.model.layers.0.self_attn.rotary_proj.lora_A.weight", { shape: [R, 64], data: new Float32Array(R * 64) });
  assert.throws(() => validateAdapterAgainst(MODEL, f, dir), isErr("UNKNOWN_MODULE", "rotary_proj"));

  const g = { config: loraConfig({ use_dora: true }), tensors: loraTensors(["o_proj"], [1], true) };
  validateAdapterAgainst(MODEL, g, dir);
  g.tensors.set(doraMagnitudeKey("o_proj", 1), { shape: [32], data: new Float32Array(32) });
  assert.throws(() => validateAdapterAgainst(MODEL, g, dir), isErr("ADAPTER_SHAPE_MISMATCH", "lora_magnitude_vector", "expected [64]"));
  g.tensors.delete(doraMagnitudeKey("o_proj", 1));
  assert.throws(() => validateAdapterAgainst(MODEL, g, dir), isErr("ADAPTER_SHAPE_MISMATCH", "lora_magnitude_vector", "use_dora"));

  const h = { config: loraConfig({ r: 8 }), tensors: loraTensors(["v_proj"], [0]) }; // tensors have r = 4
  assert.throws(() => validateAdapterAgainst(MODEL, h, dir), isErr("ADAPTER_SHAPE_MISMATCH", "r=8"));
});

Deno.test("peft adapter: q/k lora_B row conversion round-trips and touches only q/k", () => {
  for (const mod of LINEAR_MODULES) {
    const [out] = linearShape(MODEL, mod);
    const b = randn(out * R, 11);
    const gg = loraBToGguf(mod, b, out, R, MODEL.headDim);
    assert.deepEqual(loraBToHf(mod, gg, out, R, MODEL.headDim), b, mod);
    assert.deepEqual(loraBToGguf(mod, loraBToHf(mod, b, out, R, MODEL.headDim), out, R, MODEL.headDim), b, mod);
    if (mod === "q_proj" || mod === "k_proj") {
      assert.notDeepEqual(gg, b, `${mod} is permuted`);
      // Same multiset of rows: a pure row permutation.
      const rows = (x: Float32Array) => Array.from({ length: out }, (_, i) => x.slice(i * R, i * R + R).join()).sort();
      assert.deepEqual(rows(gg), rows(b));
    } else {
      assert.deepEqual(gg, b, `${mod} is unchanged`);
    }
  }
  assert.deepEqual(loraBToGguf("attn_q", new Float32Array([0, 1, 2, 3, 4, 5, 6, 7]), 8, 1, 8), new Float32Array([0, 4, 1, 5, 2, 6, 3, 7]));
});

Deno.test("peft adapter: permutation equals llama.cpp's permute (reshape(n_head, 2, D/2, cols).swapaxes(1, 2))", async () => {
  // The fixture holds inputs and outputs of convert_hf_to_gguf.py's own permute, run with torch.
  const st = await readSafetensors(new URL("../fixtures/safetensors/llamacpp_permute.safetensors", import.meta.url).pathname);
  try {
    for (const [base, rows, cols] of [["q", 16, 3], ["k", 8, 5], ["mag", 16, 1]] as const) {
      const hf = await st.readF32(`${base}_hf`);
      const gguf = await st.readF32(`${base}_gguf`);
      const mod = base === "k" ? "k_proj" : "q_proj";
      assert.deepEqual(loraBToGguf(mod, hf, rows, cols, 8), gguf, base);
      assert.deepEqual(loraBToHf(mod, gguf, rows, cols, 8), hf, base);
    }
  } finally {
    await st.close();
  }
  // And the same formula written here with numpy's reshape/swapaxes strides, on stories' k shape.
  const nHead = 4, D = 8, cols = 3;
  const x = randn(nHead * D * cols, 5);
  const y = new Float32Array(x.length);
  // y[h, j, s, c] = x[h, s, j, c] for x viewed as (n_head, 2, D/2, cols)
  for (let h = 0; h < nHead; h++) {
    for (let s = 0; s < 2; s++) {
      for (let j = 0; j < D / 2; j++) {
        for (let c = 0; c < cols; c++) y[((h * (D / 2) + j) * 2 + s) * cols + c] = x[((h * 2 + s) * (D / 2) + j) * cols + c];
      }
    }
  }
  assert.deepEqual(loraBToGguf("k_proj", x, nHead * D, cols, D), y);
});
