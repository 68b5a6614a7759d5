/**
 * The GGUF export pieces that need no GPU: which ggml type each tensor gets for f32/f16/q8_0/q4_k
 * (llama.cpp's fallbacks for rows that are not whole blocks), the encoded bytes, and the LoRA GGUF
 * layout (names, dims order, metadata types) with its checks.
 */
import assert from "node:assert/strict";
import { f32ToF16Array } from "../../src/io/bytes.ts";
import { dequantizeGgml, GGML } from "../../src/io/ggml_quants.ts";
import { quantizeGgml } from "../../src/io/ggml_quantize.ts";
import { encodeExportTensor, type GgufExportType, tensorStorage } from "../../src/io/gguf_export_types.ts";
import { encodeGGUF, GgufType, readGGUF } from "../../src/io/gguf.ts";
import { loraGgufContents } from "../../src/io/gguf_lora.ts";
import { PeftError } from "../../src/errors.ts";
import { concatBytes, randn } from "../helpers.ts";

Deno.test("export types: norms and vectors stay F32; matrices take the type or llama.cpp's fallback", () => {
  const cases: [string, number[], GgufExportType, number, boolean][] = [
    ["blk.0.attn_norm.weight", [256], "q4_k", GGML.F32, false],
    ["output_norm.weight", [64], "f16", GGML.F32, false],
    ["blk.0.attn_q.weight", [64, 64], "f32", GGML.F32, false],
    ["blk.0.attn_q.weight", [64, 64], "f16", GGML.F16, false],
    ["blk.0.ffn_down.weight", [64, 172], "f16", GGML.F16, false],
    ["token_embd.weight", [512, 64], "q8_0", GGML.Q8_0, false],
    ["blk.0.ffn_down.weight", [64, 172], "q8_0", GGML.F16, true], // convert_hf_to_gguf: QuantError -> F16
    ["blk.0.ffn_up.weight", [768, 256], "q4_k", GGML.Q4_K, false],
    ["blk.0.ffn_up.weight", [172, 64], "q4_k", GGML.Q5_0, true], // llama-quantize: Q4_K -> Q5_0
    ["blk.0.ffn_down.weight", [64, 172], "q4_k", GGML.F16, true], // ... and F16 when not whole Q5_0 blocks
    ["blk.0.ffn_down.weight", [64, 3], "q4_k", GGML.F16, true],
  ];
  for (const [name, shape, type, want, fellBack] of cases) {
    const s = tensorStorage(name, shape, type);
    assert.equal(s.ggmlType, want, `${name} [${shape}] as ${type}`);
    assert.equal(s.fallback !== undefined, fellBack, `${name} [${shape}] as ${type}: fallback noted`);
  }
  assert.match(tensorStorage("blk.0.ffn_down.weight", [64, 172], "q4_k").fallback!, /^rows of 172: Q4_K needs .*256.*, Q5_0 needs .*32.* -> F16$/);
  assert.throws(() => tensorStorage("x.weight", [32, 32], "q4_0" as GgufExportType), (e: PeftError) => e.code === "BAD_PARAMETER" && /q4_0/.test(e.message));
});

Deno.test("export types: encoded tensors are the f16 bits and ggml's reference quantizer bytes of the values", () => {
  const x = randn(64 * 172, 5, 0.1);
  const f16 = encodeExportTensor("blk.0.ffn_down.weight", [64, 172], x, "q4_k");
  assert.equal(f16.ggmlType, GGML.F16);
  assert.deepEqual(f16.data, f32ToF16Array(x));
  const y = randn(172 * 64, 6, 0.1);
  const q5 = encodeExportTensor("blk.0.ffn_up.weight", [172, 64], y, "q4_k");
  assert.deepEqual(q5.data, quantizeGgml(GGML.Q5_0, y, 64));
  const dq = dequantizeGgml(GGML.Q5_0, q5.data as Uint8Array, y.length);
  let err = 0;
  for (let i = 0; i < y.length; i++) err = Math.max(err, Math.abs(dq[i] - y[i]));
  assert.ok(err > 0 && err < 0.03, `Q5_0 round trip error ${err}`);
  const v = x.slice(0, 64);
  const norm = encodeExportTensor("output_norm.weight", [64], v, "q8_0");
  assert.equal(norm.ggmlType, GGML.F32);
  assert.equal(norm.data, v, "norms are written as given");
});

Deno.test("LoRA GGUF: llama.cpp's names, dims [in, r] / [r, out], metadata types; bad input named", async () => {
  const a = randn(4 * 64, 1), b = randn(48 * 4, 2);
  const pairs = [{ weight: "blk.0.attn_k.weight", r: 4, inFeatures: 64, outFeatures: 48, a, b }];
  const parts = encodeGGUF(loraGgufContents({ architecture: "llama", alpha: 32, name: "ad", pairs }, "x.gguf"));
  const bytes = concatBytes(parts);
  const g = await readGGUF(bytes, "lora.gguf");
  assert.equal(g.metadata.get("adapter.lora.alpha")!.type, GgufType.FLOAT32, "llama.cpp reads alpha with gguf_get_val_f32");
  assert.equal(g.get("adapter.lora.alpha"), 32);
  assert.equal(g.get("general.type"), "adapter");
  assert.equal(g.get("adapter.type"), "lora");
  assert.equal(g.get("general.architecture"), "llama");
  assert.deepEqual([...g.tensors.keys()], ["blk.0.attn_k.weight.lora_a", "blk.0.attn_k.weight.lora_b"]);
  // GGUF lists dims innermost first: lora_a ne = [in, r], lora_b ne = [r, out] (llama-adapter.cpp's shape checks).
  const dims = (name: string) => [...g.tensors.get(name)!.shape].reverse();
  assert.deepEqual(dims("blk.0.attn_k.weight.lora_a"), [64, 4]);
  assert.deepEqual(dims("blk.0.attn_k.weight.lora_b"), [4, 48]);
  assert.deepEqual(await g.readF32("blk.0.attn_k.weight.lora_a"), a);
  assert.deepEqual(await g.readF32("blk.0.attn_k.weight.lora_b"), b);
  await g.close();

  const bad = (input: Partial<Parameters<typeof loraGgufContents>[0]>, message: RegExp) =>
    assert.throws(() => loraGgufContents({ architecture: "llama", alpha: 32, pairs, ...input }, "out/lora.gguf"),
      (e: PeftError) => e.code === "LORA_GGUF_INVALID" && /^out\/lora\.gguf: /.test(e.message) && message.test(e.message));
  bad({ alpha: 0 }, /adapter\.lora\.alpha must be a finite non-zero number, got 0/);
  bad({ alpha: NaN }, /got NaN/);
  bad({ pairs: [] }, /no lora_a\/lora_b pairs/);
  bad({ pairs: [...pairs, pairs[0]] }, /two pairs for blk\.0\.attn_k\.weight/);
  bad({ pairs: [{ ...pairs[0], weight: "blk.0.attn_k" }] }, /must end in \.weight/);
  bad({ pairs: [{ ...pairs[0], r: 5 }] }, /blk\.0\.attn_k\.weight\.lora_a has 256 values, \[r 5, in 64\] needs 320/);
  bad({ pairs: [{ ...pairs[0], outFeatures: 40 }] }, /lora_b has 192 values, \[out 40, r 4\] needs 160/);
});
