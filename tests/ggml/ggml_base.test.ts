/**
 * A GGUF base whose matrices are in ggml block formats stays in them on the GPU (issue 13 part 2):
 * for every type, the allocator's "weights" bytes are exactly the format's bytes per parameter
 * (plus the f32 norms), no f32 copy of a matrix exists, and the logits equal those of the same
 * file expanded to f32 at load (dequantize: true), embeddings looked up from quantized rows
 * included. On a Q4_K base: merging a LoRA adapter gives f32 weights (or Q4_K again with
 * requantize) and unmerging restores the Q4_K bytes; methods that need the dense weight are
 * refused naming it and its type; the base re-quantizes to NF4 at load. Bad files: an unsupported
 * type and a non-finite block scale are clear errors.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type Model } from "../../src/api/model.ts";
import { f32ToF16 } from "../../src/io/bytes.ts";
import { GGML, GGML_TYPES } from "../../src/io/ggml_quants.ts";
import { readGGUF, writeGGUF } from "../../src/io/gguf.ts";
import { isQuantized } from "../../src/model/quantized.ts";
import { GgmlLinear } from "../../src/model/quantized_ggml.ts";
import { assertClose, isErr, testGpu } from "../helpers.ts";
import { quantizedStories, WIDE } from "./helpers.ts";

const TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "BF16"] as const;
const IDS = [1, 403, 407, 261, 378, 1000 % 512, 17];
const NORM_BYTES = (2 * WIDE.nLayers + 1) * WIDE.dim * 4;

async function logits(m: Model, adapter?: string): Promise<Float32Array> {
  const rows = await m.logits(IDS, adapter ? { adapter } : {});
  return Float32Array.from(rows.flatMap((r) => [...r]));
}

Deno.test("every ggml type stays in its format on the GPU: allocator bytes per parameter are the format's, logits equal the f32-expanded file's", async () => {
  const gpu = await testGpu();
  const dir = await mkdtemp(join(tmpdir(), "ggml-base-"));
  try {
    for (const name of TYPES) {
      const t = GGML_TYPES.get(GGML[name])!;
      const bits = (t.typeSize * 8) / t.blockSize;
      const path = await quantizedStories(GGML[name], dir);
      const before = gpu.memoryByCategory().weights ?? 0;
      const kept = await loadModel(path, { gpu });
      const held = (gpu.memoryByCategory().weights ?? 0) - before;
      const expanded = await loadModel(path, { gpu, dequantize: true });
      try {
        const p = kept.parameterReport();
        assert.equal(held - NORM_BYTES, (p.ggmlParams * bits) / 8, `${name}: GPU weight bytes = ${bits} bits a parameter + the f32 norms`);
        assert.equal(p.ggmlTypes[name].bitsPerParam, bits, name);
        assert.equal(kept.memoryReport().base_ggml, held - NORM_BYTES);
        assert.deepEqual([...kept.llama.weights.keys()].filter((n) => !n.endsWith("norm.weight")), [], `${name}: no f32 copy of a matrix`);
        assert.ok(kept.llama.lw("token_embd.weight") instanceof GgmlLinear, `${name}: the embedding table is kept quantized`);
        assert.equal(expanded.parameterReport().ggmlParams, 0, `${name}: dequantize expands every tensor`);
        // Same values, different kernels (dequantizing matmuls vs the f32 matmul): f32 rounding only.
        assertClose(await logits(kept), await logits(expanded), 1e-4, 1e-5, `${name} logits`);
      } finally {
        kept.close();
        expanded.close();
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("a Q4_K base: LoRA merges to f32 (or Q4_K with requantize) and unmerges exactly; dense-base methods are refused; prompt tuning reads quantized rows", async () => {
  const gpu = await testGpu();
  const dir = await mkdtemp(join(tmpdir(), "ggml-merge-"));
  const m = await loadModel(await quantizedStories(GGML.Q4_K, dir), { gpu });
  try {
    const w = "blk.1.attn_q.weight";
    const q4 = m.llama.lw(w) as GgmlLinear;
    const bytes = await q4.bytes();
    m.addAdapter("a", { r: 4, lora_alpha: 8, target_modules: ["q_proj", "down_proj"], init_lora_weights: false }, 3);
    const base = await logits(m), adapted = await logits(m, "a");
    assert.ok(adapted.some((v, i) => Math.abs(v - base[i]) > 1e-2), "the adapter changes the logits");

    await m.merge("a");
    assert.ok(!isQuantized(m.llama.lw(w)), "merged weights are the exact f32 sum");
    assertClose(await logits(m), adapted, 1e-4, 1e-5, "merged vs unmerged adapter");
    await m.unmerge("a");
    assert.equal(m.llama.lw(w), q4, "unmerge puts the Q4_K weight back");
    assert.deepEqual(await q4.bytes(), bytes);
    assert.deepEqual(await logits(m), base);

    await m.merge("a", { requantize: true });
    const re = m.llama.lw(w);
    assert.ok(re instanceof GgmlLinear && re.format === "Q4_K", "requantize keeps the weight's own format");
    assert.deepEqual(Object.keys(m.parameterReport().ggmlTypes), ["Q4_K"]);
    await m.unmerge("a");

    for (const [config, what] of [[{ r: 4, use_dora: true }, "use_dora"], [{ peft_type: "PARTIAL", target_modules: ["q_proj"] }, "partial"]] as const) {
      assert.throws(() => m.addAdapter("d", config), isErr("UNSUPPORTED", what, "blk.0.attn_q.weight", "Q4_K", "dequantize"));
    }
    m.addAdapter("p", { peft_type: "PROMPT_TUNING", num_virtual_tokens: 3, prompt_tuning_init: "TEXT", prompt_tuning_init_text: "Once upon" });
    const prompt = await gpu.readF32(m.adapter("p").params.get("prompt_embeddings")!.value);
    const table = await (m.llama.lw("token_embd.weight") as GgmlLinear).dequantize();
    const ids = m.tokenizer.encode("Once upon", { addSpecial: true });
    const rows = Array.from({ length: 3 }, (_, i) => [...table.subarray(ids[i % ids.length] * WIDE.dim, (ids[i % ids.length] + 1) * WIDE.dim)]);
    assert.deepEqual([...prompt], rows.flat(), "prompt tuning's TEXT init reads the Q4_K table's rows");
  } finally {
    m.close();
  }
  const expanded = await loadModel(await quantizedStories(GGML.Q4_K, dir), { gpu, dequantize: true });
  try {
    expanded.addAdapter("d", { r: 4, use_dora: true }); // the way out the error names
  } finally {
    expanded.close();
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("a Q4_K GGUF re-quantizes to NF4 at load: block linears NF4 from the Q4_K values, embedding table and head stay Q4_K", async () => {
  const gpu = await testGpu();
  const dir = await mkdtemp(join(tmpdir(), "ggml-nf4-"));
  const path = await quantizedStories(GGML.Q4_K, dir);
  const nf4 = await loadModel(path, { gpu, quantize: "nf4", doubleQuant: true });
  // The same NF4 codes made from the f32-expanded file; its embedding table and head are the f32 values.
  const ref = await loadModel(path, { gpu, quantize: "nf4", doubleQuant: true, dequantize: true });
  try {
    const p = nf4.parameterReport();
    assert.equal(p.quantizedParams, WIDE.nLayers * (5 * 256 * 256 + 2 * 128 * 256), "every block linear is NF4");
    assert.deepEqual(Object.keys(p.ggmlTypes), ["Q4_K"]);
    assert.equal(p.ggmlParams, 2 * WIDE.vocabSize * WIDE.dim, "token_embd and output stay Q4_K");
    assert.ok(nf4.memoryReport().base_4bit > 0 && nf4.memoryReport().base_ggml > 0);
    assert.equal(ref.parameterReport().ggmlParams, 0);
    assertClose(await logits(nf4), await logits(ref), 1e-4, 1e-5, "NF4 from the Q4_K values");
  } finally {
    nf4.close();
    ref.close();
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("bad GGUF tensors: an unsupported type is refused at open naming file, tensor, type and the supported ones; a non-finite Q4_K scale names the tensor", async () => {
  const dir = await mkdtemp(join(tmpdir(), "ggml-bad-"));
  try {
    const src = await readGGUF(await quantizedStories(GGML.Q4_K, dir));
    const tensors = [];
    for (const t of src.tensors.values()) tensors.push({ name: t.name, shape: t.shape, data: (await src.readRaw(t.name)).bytes, ggmlType: t.ggmlType });
    const metadata = src.metadata;
    await src.close();
    const q2k = join(dir, "q2k.gguf");
    const victim = "blk.2.ffn_up.weight";
    await writeGGUF(q2k, {
      metadata,
      tensors: tensors.map((t) => t.name === victim ? { ...t, data: new Uint8Array((256 * 256 / 256) * 84), ggmlType: GGML.Q2_K } : t),
    });
    await assert.rejects(
      loadModel(q2k, { gpu: await testGpu() }),
      isErr("GGUF_UNSUPPORTED_TYPE", q2k, victim, "Q2_K", "supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K"),
    );
    const inf = join(dir, "inf.gguf");
    const bad = tensors.find((t) => t.name === victim)!.data.slice();
    new DataView(bad.buffer).setUint16(3 * 144, f32ToF16(Infinity), true); // block 3's d
    await writeGGUF(inf, { metadata, tensors: tensors.map((t) => t.name === victim ? { ...t, data: bad } : t) });
    await assert.rejects(loadModel(inf, { gpu: await testGpu() }), isErr("MODEL_BAD_WEIGHT", inf, victim, "non-finite", `index ${3 * 256}`));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
