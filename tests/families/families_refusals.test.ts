/**
 * Clear refusals (issue 13 part 5): an architecture, rope scaling or tensor we do not run, or a
 * family file missing what its family needs, gets one PeftError naming the file and the key or
 * tensor, listing what is supported — from GGUF and from HF directories.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { GgufType, readGGUF, writeGGUF, type GgufMetaEntry, type GgufWriteTensor } from "../../src/io/gguf.ts";
import { readSafetensors, writeSafetensors } from "../../src/io/safetensors.ts";
import { hfWeights } from "../../src/model/hf_weights.ts";
import { ggufWeights } from "../../src/model/weights.ts";
import { isErr } from "../helpers.ts";
import { familyModel } from "./fixtures.ts";

const dir = Deno.makeTempDirSync({ prefix: "families-refusals-" });
addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

/** A copy of a GGUF with its metadata and tensors edited. */
async function editGguf(src: string, name: string, edit: (meta: Map<string, GgufMetaEntry>, tensors: GgufWriteTensor[]) => GgufWriteTensor[] | void): Promise<string> {
  const g = await readGGUF(src);
  const meta = new Map(g.metadata);
  let tensors: GgufWriteTensor[] = [];
  for (const [n, t] of g.tensors) tensors.push({ name: n, shape: t.shape, data: await g.readF32(n) });
  await g.close();
  tensors = edit(meta, tensors) ?? tensors;
  const path = join(dir, `${name}.gguf`);
  await writeGGUF(path, { metadata: meta, tensors });
  return path;
}

/** A copy of an HF directory with config.json and the tensors edited. */
async function editHf(src: string, name: string, edit: (config: Record<string, unknown>, tensors: Map<string, { shape: number[]; data: Float32Array }>) => void): Promise<string> {
  const out = join(dir, name);
  await Deno.mkdir(out, { recursive: true });
  const config = JSON.parse(await readFile(join(src, "config.json"), "utf8"));
  const st = await readSafetensors(join(src, "model.safetensors"));
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [n, t] of st.tensors) tensors.set(n, { shape: t.shape, data: await st.readF32(n) });
  await st.close();
  edit(config, tensors);
  await writeFile(join(out, "config.json"), JSON.stringify(config));
  await writeSafetensors(join(out, "model.safetensors"), [...tensors].map(([n, t]) => ({ name: n, dtype: "F32" as const, ...t })));
  return out;
}

const str = (value: string): GgufMetaEntry => ({ type: GgufType.STRING, value });

Deno.test("refusals (GGUF): unknown architecture, unsupported rope scaling, qwen2 without biases, LongRoPE factors, rope_freqs on qwen2, partial rotary on llama", async () => {
  const qwen = (await familyModel("qwen2")).gguf, phi = (await familyModel("phi3")).gguf, llama = (await familyModel("llama")).gguf;
  const cases: [string, Promise<string>, string, string[]][] = [
    ["unknown arch", editGguf(llama, "gemma2", (m) => void m.set("general.architecture", str("gemma2"))), "UNSUPPORTED_ARCH",
      ["general.architecture", "gemma2", "supported: llama, mistral, qwen2, phi3"]],
    ["yarn", editGguf(llama, "yarn", (m) => void m.set("llama.rope.scaling.type", str("yarn"))), "GGUF_UNSUPPORTED",
      ["llama.rope.scaling.type", "yarn", "rope_freqs.weight"]],
    ["qwen2 without biases", editGguf(qwen, "nobias", (_m, t) => t.filter((x) => !x.name.endsWith(".bias"))), "GGUF_MISSING_TENSOR",
      ["blk.0.attn_q.bias", "qwen2", "q/k/v biases"]],
    ["qwen2 without one bias", editGguf(qwen, "nobias1", (_m, t) => t.filter((x) => x.name !== "blk.1.attn_v.bias")), "GGUF_MISSING_TENSOR", ["blk.1.attn_v.bias"]],
    ["bias of the wrong size", editGguf(qwen, "badbias", (_m, t) => t.map((x) => x.name === "blk.0.attn_k.bias" ? { ...x, shape: [8], data: x.data.slice(0, 8) } : x)),
      "GGUF_BAD_TENSOR", ["blk.0.attn_k.bias", "[8]", "[32]"]],
    ["longrope", editGguf(phi, "longrope", (_m, t) => [...t, { name: "rope_factors_long.weight", shape: [6], data: new Float32Array(6).fill(1) }]), "UNSUPPORTED",
      ["rope_factors_long.weight", "LongRoPE"]],
    ["rope_freqs on qwen2", editGguf(qwen, "freqs", (_m, t) => [...t, { name: "rope_freqs.weight", shape: [8], data: new Float32Array(8).fill(1) }]), "GGUF_UNUSED_TENSOR",
      ["rope_freqs.weight", "qwen2", "supported for: llama"]],
    ["rope_freqs with a bad value", editGguf((await familyModel("llama3")).gguf, "freqs0", (_m, t) => t.map((x) => x.name === "rope_freqs.weight" ? { ...x, data: x.data.map((v, i) => i === 3 ? 0 : v) } : x)),
      "GGUF_BAD_TENSOR", ["rope_freqs.weight", "value 3"]],
    ["partial rotary on llama", editGguf(llama, "partial", (m) => void m.set("llama.rope.dimension_count", { type: GgufType.UINT32, value: 8 })), "GGUF_BAD_KEY",
      ["llama.rope.dimension_count", "head dimension"]],
    ["fused bias", editGguf(phi, "qkvbias", (_m, t) => [...t, { name: "blk.0.attn_qkv.bias", shape: [192], data: new Float32Array(192) }]), "UNSUPPORTED", ["blk.0.attn_qkv.bias"]],
    ["per-layer window pattern", editGguf(phi, "pattern", (m) => void m.set("phi3.attention.sliding_window_pattern", { type: GgufType.UINT32, value: 4 })), "GGUF_UNSUPPORTED",
      ["phi3.attention.sliding_window_pattern"]],
  ];
  for (const [what, path, code, parts] of cases) {
    const p = await path;
    await assert.rejects(ggufWeights(p), isErr(code, p, ...parts), what);
  }
});

Deno.test("refusals (HF): unknown architecture and model_type, unsupported rope_scaling types, qwen2 without biases, per-layer windows, a fused tensor in a llama", async () => {
  const qwen = (await familyModel("qwen2")).hf, phi = (await familyModel("phi3")).hf, llama = (await familyModel("llama")).hf;
  const cases: [string, Promise<string>, string, string[]][] = [
    ["gemma2", editHf(llama, "gemma2", (c) => void (c.architectures = ["Gemma2ForCausalLM"])), "UNSUPPORTED_ARCH",
      ["Gemma2ForCausalLM", "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM"]],
    ["model_type", editHf(llama, "mt", (c) => void (delete c.architectures, c.model_type = "gemma2")), "UNSUPPORTED_ARCH", ["model_type", "gemma2", "llama, mistral, qwen2, phi3"]],
    ["yarn", editHf(llama, "yarn", (c) => void (c.rope_scaling = { rope_type: "yarn", factor: 4, original_max_position_embeddings: 64 })), "HF_UNSUPPORTED",
      ["rope_scaling", "yarn", "llama3"]],
    ["llama3 on qwen2", editHf(qwen, "q-llama3", (c) => void (c.rope_scaling = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 })),
      "HF_UNSUPPORTED", ["rope_scaling", "llama3", "qwen2"]],
    ["longrope", editHf(phi, "longrope", (c) => void (c.rope_scaling = { type: "longrope", long_factor: [1], short_factor: [1] })), "HF_UNSUPPORTED", ["longrope", "phi3"]],
    ["untyped scaling", editHf(llama, "untyped", (c) => void (c.rope_scaling = { factor: 2 })), "HF_BAD_CONFIG", ["rope_scaling", "rope_type"]],
    ["llama3 without factor", editHf(llama, "nofactor", (c) => void (c.rope_scaling = { rope_type: "llama3", low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 })),
      "HF_BAD_CONFIG", ["rope_scaling.factor"]],
    ["qwen2 without biases", editHf(qwen, "nobias", (_c, t) => { for (const n of [...t.keys()]) if (n.endsWith(".bias")) t.delete(n); }), "HF_MISSING_TENSOR",
      ["model.layers.0.self_attn.q_proj.bias", "q/k/v biases"]],
    ["use_sliding_window", editHf(qwen, "swa", (c) => void (c.use_sliding_window = true)), "HF_UNSUPPORTED", ["use_sliding_window", "max_window_layers"]],
    ["bias in a llama", editHf(llama, "llama-bias", (_c, t) => void t.set("model.layers.0.self_attn.q_proj.bias", { shape: [64], data: new Float32Array(64) })), "HF_UNKNOWN_TENSOR",
      ["model.layers.0.self_attn.q_proj.bias", "llama"]],
    ["up_proj beside gate_up_proj", editHf(phi, "phi-twin", (_c, t) => void t.set("model.layers.1.mlp.up_proj.weight", { shape: [96, 64], data: new Float32Array(96 * 64) })),
      "HF_UNKNOWN_TENSOR", ["gate_up_proj", "up_proj", "blk.1.ffn_up.weight"]],
    ["fused in a llama", editHf(phi, "phi-as-llama", (c) => void (c.architectures = ["LlamaForCausalLM"], c.model_type = "llama", delete c.partial_rotary_factor)), "HF_MISSING_TENSOR",
      ["model.layers.0.self_attn.q_proj.weight"]],
  ];
  for (const [what, path, code, parts] of cases) {
    const p = await path;
    await assert.rejects(hfWeights(p), isErr(code, ...parts), what);
  }
});
