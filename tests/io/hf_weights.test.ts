import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readSafetensors, type SafetensorsWriteTensor, writeSafetensors } from "../../src/io/safetensors.ts";
import { permuteQK } from "../../src/model/config.ts";
import { configFromHF, hfConfigJson, hfWeights, writeHfDirectory } from "../../src/model/hf_weights.ts";
import { ggufWeights } from "../../src/model/weights.ts";
import { STORIES, isErr } from "../helpers.ts";

/** stories260K converted to an HF directory once per test, in a fresh temp dir. */
async function withStoriesHf(fn: (dir: string, root: string) => Promise<void>) {
  const root = await mkdtemp(join(tmpdir(), "hf-"));
  const gguf = await ggufWeights(STORIES);
  try {
    const dir = join(root, "stories-hf");
    await writeHfDirectory(dir, gguf);
    await fn(dir, root);
  } finally {
    await gguf.close();
    await rm(root, { recursive: true, force: true });
  }
}

Deno.test("hf weights: stories260K -> HF directory -> hfWeights gives every GGUF tensor bit for bit", async () => {
  await withStoriesHf(async (dir) => {
    const gguf = await ggufWeights(STORIES);
    const hf = await hfWeights(dir);
    try {
      assert.deepEqual(hf.config, gguf.config);
      // (stories260K.gguf does carry output.weight, whatever its README says.)
      assert.equal(hf.config.tiedEmbeddings, false);
      assert.deepEqual(hf.names().sort(), gguf.names().sort());
      for (const name of gguf.names()) {
        assert.deepEqual(hf.shape(name), gguf.shape(name), name);
        assert.deepEqual(await hf.readF32(name), await gguf.readF32(name), name);
      }
      assert.equal(hf.tokenizerJsonPath, undefined);

      // On disk the q/k rows are in HF order (so transformers would read them right), others as-is.
      const st = await readSafetensors(join(dir, "model.safetensors"));
      assert.deepEqual(await st.readF32("lm_head.weight"), await gguf.readF32("output.weight"));
      const qHf = await st.readF32("model.layers.2.self_attn.q_proj.weight");
      const qGg = await gguf.readF32("blk.2.attn_q.weight");
      assert.notDeepEqual(qHf, qGg);
      assert.deepEqual(qHf, permuteQK(qGg, 64, 64, 8, "gguf_to_hf"));
      const kHf = await st.readF32("model.layers.4.self_attn.k_proj.weight");
      assert.deepEqual(kHf, permuteQK(await gguf.readF32("blk.4.attn_k.weight"), 32, 64, 8, "gguf_to_hf"));
      assert.deepEqual(await st.readF32("model.layers.0.mlp.gate_proj.weight"), await gguf.readF32("blk.0.ffn_gate.weight"));
      assert.deepEqual(await st.readF32("model.embed_tokens.weight"), await gguf.readF32("token_embd.weight"));
      await st.close();

      const cfg = JSON.parse(await readFile(join(dir, "config.json"), "utf8"));
      assert.deepEqual(cfg.architectures, ["LlamaForCausalLM"]);
      assert.equal(cfg.hidden_size, 64);
      assert.equal(cfg.intermediate_size, 172);
      assert.equal(cfg.num_hidden_layers, 5);
      assert.equal(cfg.num_attention_heads, 8);
      assert.equal(cfg.num_key_value_heads, 4);
      assert.equal(cfg.tie_word_embeddings, false);
      assert.equal(cfg.torch_dtype, "float32");
    } finally {
      await hf.close();
      await gguf.close();
    }
  });
});

Deno.test("hf weights: sharded checkpoints (index.json), tied embeddings without lm_head, tokenizer.json", async () => {
  await withStoriesHf(async (dir, root) => {
    const st = await readSafetensors(join(dir, "model.safetensors"));
    const names = [...st.tensors.keys()].filter((n) => n !== "lm_head.weight");
    const half = Math.floor(names.length / 2);
    const sharded = join(root, "sharded");
    const weightMap: Record<string, string> = {};
    const shards: [string, string[]][] = [
      ["model-00001-of-00002.safetensors", names.slice(0, half)],
      ["model-00002-of-00002.safetensors", names.slice(half)],
    ];
    for (const [file, list] of shards) {
      const tensors: SafetensorsWriteTensor[] = [];
      for (const n of list) {
        tensors.push({ name: n, dtype: st.tensors.get(n)!.dtype, shape: st.tensors.get(n)!.shape, data: await st.read(n) });
        weightMap[n] = file;
      }
      await mkdir(sharded, { recursive: true });
      await writeSafetensors(join(sharded, file), tensors);
    }
    await st.close();
    await writeFile(join(sharded, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    const cfg = JSON.parse(await readFile(join(dir, "config.json"), "utf8"));
    await writeFile(join(sharded, "config.json"), JSON.stringify({ ...cfg, tie_word_embeddings: true }));
    await writeFile(join(sharded, "tokenizer.json"), "{}");

    const gguf = await ggufWeights(STORIES);
    const hf = await hfWeights(sharded);
    try {
      assert.equal(hf.config.tiedEmbeddings, true);
      assert.equal(hf.tokenizerJsonPath, join(sharded, "tokenizer.json"));
      assert.ok(!hf.names().includes("output.weight"));
      for (const name of gguf.names().filter((n) => n !== "output.weight")) assert.deepEqual(await hf.readF32(name), await gguf.readF32(name), name);
    } finally {
      await hf.close();
      await gguf.close();
    }

    // A shard listed in the index but absent, and a tensor listed but not in its shard.
    await unlink(join(sharded, "model-00002-of-00002.safetensors"));
    await assert.rejects(hfWeights(sharded), isErr("HF_NOT_FOUND", "model-00002-of-00002.safetensors"));
    const firstOnly = Object.fromEntries(Object.entries(weightMap).filter(([, f]) => f === shards[0][0]));
    await writeFile(join(sharded, "model.safetensors.index.json"), JSON.stringify({ weight_map: { ...firstOnly, "model.norm.weight": shards[0][0] } }));
    await assert.rejects(hfWeights(sharded), isErr("HF_MISSING_TENSOR", "model.norm.weight", "index.json"));
    await writeFile(join(sharded, "model.safetensors.index.json"), JSON.stringify({ weight_map: { "model.norm.weight": "../evil.safetensors" } }));
    await assert.rejects(hfWeights(sharded), isErr("HF_BAD_INDEX", "weight_map.model.norm.weight"));
    await writeFile(join(sharded, "model.safetensors.index.json"), JSON.stringify({ weights: {} }));
    await assert.rejects(hfWeights(sharded), isErr("HF_BAD_INDEX", "weight_map"));
  });
});

Deno.test("hf weights: config.json fields are checked and named", () => {
  const f = "m/config.json";
  const base = hfConfigJson({
    architecture: "llama", vocabSize: 512, dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, headDim: 8,
    ropeDim: 8, ropeBase: 10000, normEps: 1e-5, contextLength: 2048, tiedEmbeddings: true,
  });
  assert.equal(configFromHF(base, f).dim, 64);
  // HF defaults: kv heads = heads, head_dim = hidden/heads, rope_theta 10000, eps 1e-6.
  const minimal = { architectures: ["MistralForCausalLM"], hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 100 };
  const m = configFromHF(minimal, f);
  assert.deepEqual([m.architecture, m.nKvHeads, m.headDim, m.ropeBase, m.normEps, m.contextLength], ["mistral", 4, 16, 10000, 1e-6, 2048]);
  const cases: [Record<string, unknown>, string, string][] = [
    [{ hidden_size: undefined }, "HF_BAD_CONFIG", "hidden_size is missing"],
    [{ intermediate_size: undefined }, "HF_BAD_CONFIG", "intermediate_size"],
    [{ num_hidden_layers: "5" }, "HF_BAD_CONFIG", "num_hidden_layers must be a positive integer"],
    [{ num_attention_heads: 0 }, "HF_BAD_CONFIG", "num_attention_heads"],
    [{ num_key_value_heads: 3 }, "HF_BAD_CONFIG", "num_key_value_heads 3"],
    [{ head_dim: 7 }, "HF_BAD_CONFIG", "head_dim 7"],
    [{ vocab_size: -1 }, "HF_BAD_CONFIG", "vocab_size"],
    [{ rms_norm_eps: "1e-5" }, "HF_BAD_CONFIG", "rms_norm_eps"],
    [{ rope_theta: 0 }, "HF_BAD_CONFIG", "rope_theta"],
    [{ tie_word_embeddings: "yes" }, "HF_BAD_CONFIG", "tie_word_embeddings"],
    [{ rope_scaling: { type: "linear", factor: 2 } }, "HF_UNSUPPORTED", "rope_scaling"],
    [{ attention_bias: true }, "HF_UNSUPPORTED", "attention_bias"],
    [{ hidden_act: "gelu" }, "HF_UNSUPPORTED", "hidden_act"],
    [{ architectures: ["GPT2LMHeadModel"] }, "UNSUPPORTED_ARCH", "GPT2LMHeadModel"],
    [{ architectures: "LlamaForCausalLM" }, "HF_BAD_CONFIG", "architectures"],
    [{ architectures: undefined, model_type: "gpt2" }, "UNSUPPORTED_ARCH", "model_type"],
  ];
  for (const [over, code, part] of cases) assert.throws(() => configFromHF({ ...base, ...over }, f), isErr(code, f, part), JSON.stringify(over));
  assert.throws(() => configFromHF([], f), isErr("HF_BAD_CONFIG", f));
});

Deno.test("hf weights: bad directories give clear errors", async () => {
  await withStoriesHf(async (dir, root) => {
    const missing = join(root, "nope");
    await assert.rejects(hfWeights(missing), isErr("HF_NOT_FOUND", missing));
    const cfgPath = join(dir, "config.json");
    const cfgText = await readFile(cfgPath, "utf8");
    const cfg = JSON.parse(cfgText);

    await writeFile(cfgPath, "{");
    await assert.rejects(hfWeights(dir), isErr("HF_BAD_CONFIG", cfgPath, "JSON"));
    await writeFile(cfgPath, JSON.stringify({ ...cfg, hidden_size: undefined }));
    await assert.rejects(hfWeights(dir), isErr("HF_BAD_CONFIG", cfgPath, "hidden_size"));
    // Config disagrees with the tensors: shape error names the tensor and both shapes.
    await writeFile(cfgPath, JSON.stringify({ ...cfg, intermediate_size: 100 }));
    await assert.rejects(hfWeights(dir), isErr("HF_BAD_TENSOR", "mlp.gate_proj.weight", "[172,64]", "[100,64]"));
    // A layer count that disagrees with the layers present is refused before anything is sized by it.
    await writeFile(cfgPath, JSON.stringify({ ...cfg, num_hidden_layers: 6 }));
    await assert.rejects(hfWeights(dir), isErr("HF_BAD_CONFIG", cfgPath, "num_hidden_layers is 6", "5 layers"));
    await writeFile(cfgPath, JSON.stringify({ ...cfg, num_hidden_layers: 4 }));
    await assert.rejects(hfWeights(dir), isErr("HF_BAD_CONFIG", cfgPath, "num_hidden_layers is 4", "5 layers"));
    await writeFile(cfgPath, JSON.stringify({ ...cfg, num_hidden_layers: 2 ** 31 }));
    await assert.rejects(hfWeights(dir), isErr("HF_BAD_CONFIG", cfgPath, "num_hidden_layers is 2147483648"));
    await writeFile(cfgPath, cfgText);

    // A tensor a llama does not have (e.g. a bias) is refused rather than silently ignored.
    const st = await readSafetensors(join(dir, "model.safetensors"));
    const tensors: SafetensorsWriteTensor[] = [];
    for (const [name, t] of st.tensors) tensors.push({ name, dtype: t.dtype, shape: t.shape, data: await st.read(name) });
    await st.close();
    await writeSafetensors(join(dir, "model.safetensors"), [
      ...tensors,
      { name: "model.layers.0.self_attn.q_proj.bias", dtype: "F32", shape: [64], data: new Float32Array(64) },
      { name: "model.layers.0.self_attn.rotary_emb.inv_freq", dtype: "F32", shape: [4], data: new Float32Array(4) },
    ]);
    await assert.rejects(hfWeights(dir), isErr("HF_UNKNOWN_TENSOR", "q_proj.bias"));
    await writeSafetensors(join(dir, "model.safetensors"), tensors.filter((t) => t.name !== "model.norm.weight"));
    await assert.rejects(hfWeights(dir), isErr("HF_MISSING_TENSOR", "model.norm.weight"));

    await unlink(join(dir, "model.safetensors"));
    await assert.rejects(hfWeights(dir), isErr("HF_NOT_FOUND", "model.safetensors"));
    await writeFile(join(dir, "pytorch_model.bin"), new Uint8Array([0x80, 2]));
    await assert.rejects(hfWeights(dir), isErr("HF_UNSUPPORTED_FORMAT", "pytorch_model.bin", "safetensors"));
    await unlink(cfgPath);
    await assert.rejects(hfWeights(dir), isErr("HF_NOT_FOUND", cfgPath));
  });
});
