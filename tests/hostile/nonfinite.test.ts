/**
 * Issue #17 finding 5 (files): NaN / Inf weights are refused at load, naming the file and the
 * tensor: in a GGUF model, an HF safetensors model (F32 and F16) and a PEFT adapter.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PeftError } from "../../src/errors.ts";
import { readSafetensors, type SafetensorsWriteTensor, writeSafetensors } from "../../src/io/safetensors.ts";
import { ggufWeights } from "../../src/model/weights.ts";
import { writeHfDirectory } from "../../src/model/hf_weights.ts";
import { loadModel } from "../../src/api/model.ts";
import { STORIES, testGpu } from "../helpers.ts";
import { reencoded } from "./gguf_layout.ts";
import { storiesTokenizerJson } from "./tokenizer_files.ts";

function isRefusal(code: string, ...mentions: string[]) {
  return (e: unknown) => {
    assert.ok(e instanceof PeftError, `expected a PeftError, got ${e}`);
    assert.equal(e.code, code, e.message);
    for (const m of mentions) assert.ok(e.message.includes(m), `"${e.message}" should name ${m}`);
    return true;
  };
}

/** Rewrites a safetensors file with `fn` applied to the named tensor's raw bytes (and dtype). */
async function rewrite(path: string, name: string, fn: (t: SafetensorsWriteTensor) => SafetensorsWriteTensor) {
  const st = await readSafetensors(path, undefined);
  const list: SafetensorsWriteTensor[] = [];
  for (const [k, t] of st.tensors) {
    const data = await st.read(k);
    const w: SafetensorsWriteTensor = { name: k, dtype: t.dtype, shape: t.shape, data };
    list.push(k === name ? fn(w) : w);
  }
  await st.close();
  await writeSafetensors(path, list);
}

Deno.test("finding 5: NaN and Inf model weights are refused at load (GGUF, HF F32, HF F16)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "nonfinite-"));
  try {
    const gpu = await testGpu();
    for (const bad of [NaN, Infinity, -Infinity]) {
      const path = join(dir, "bad.gguf");
      await writeFile(path, await reencoded((p) => p.tensors.find((t) => t.name === "blk.2.ffn_up.weight")!.data[77] = bad));
      await assert.rejects(loadModel(path, { gpu }), isRefusal("MODEL_BAD_WEIGHT", path, "blk.2.ffn_up.weight", "non-finite"));
    }
    const hf = join(dir, "hf");
    const src = await ggufWeights(STORIES);
    await writeHfDirectory(hf, src);
    await src.close();
    await writeFile(join(hf, "tokenizer.json"), JSON.stringify(await storiesTokenizerJson()));
    const model = join(hf, "model.safetensors");
    const name = "model.layers.1.self_attn.v_proj.weight";
    await rewrite(model, name, (t) => {
      const f = new Float32Array((t.data as Uint8Array).slice().buffer);
      f[5] = NaN;
      return { ...t, data: f };
    });
    await assert.rejects(loadModel(hf, { gpu }), isRefusal("MODEL_BAD_WEIGHT", model, name, "index 5"));
    await rewrite(model, name, (t) => {
      const f16 = new Uint16Array(t.shape[0] * t.shape[1]);
      f16[9] = 0x7c00; // +Inf in half precision
      return { ...t, dtype: "F16", data: f16 };
    });
    await assert.rejects(loadModel(hf, { gpu }), isRefusal("MODEL_BAD_WEIGHT", model, name, "index 9"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("finding 5: an adapter with NaN or Inf is refused at load, naming its file and tensor", async () => {
  const dir = await mkdtemp(join(tmpdir(), "nonfinite-adapter-"));
  const model = await loadModel(STORIES, { gpu: await testGpu() });
  try {
    model.addAdapter("a", { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"], init_lora_weights: false }, 3);
    const adapterDir = join(dir, "a");
    await model.saveAdapter("a", adapterDir);
    await model.loadAdapter("copy", adapterDir); // the saved adapter itself loads
    const file = join(adapterDir, "adapter_model.safetensors");
    const key = "base_model.model.model.layers.3.self_attn.v_proj.lora_B.weight";
    for (const bad of [NaN, Infinity]) {
      await rewrite(file, key, (t) => {
        const f = new Float32Array((t.data as Uint8Array).slice().buffer);
        f[f.length - 1] = bad;
        return { ...t, data: f };
      });
      await assert.rejects(model.loadAdapter(`bad${bad}`, adapterDir), isRefusal("ADAPTER_BAD_TENSOR", file, key, "non-finite"));
      assert.ok(!model.adapters.has(`bad${bad}`));
    }
  } finally {
    model.close();
    await rm(dir, { recursive: true, force: true });
  }
});
