/** The quantize CLI on stories260K: bnb layout under HF names, q/k in HF row order, plain tensors as F32. */
import assert from "node:assert/strict";
import { main } from "../../src/cli/quantize.ts";
import { readGGUF } from "../../src/io/gguf.ts";
import { readSafetensors } from "../../src/io/safetensors.ts";
import { bnb4bitWeightNames, readBnb4bit } from "../../src/io/bnb4bit.ts";
import { dequantize4bit } from "../../src/quant/mod.ts";
import { permuteQK } from "../../src/model/config.ts";
import { STORIES } from "../helpers.ts";

Deno.test("quantize CLI: stories260K -> bnb nf4 safetensors that loads back", async () => {
  const out = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    await main(["--model", STORIES, "--out", out, "--type", "nf4", "--double-quant"]);
    const f = await readSafetensors(out);
    const names = bnb4bitWeightNames(f);
    assert.equal(names.length, 5 * 7);
    assert.ok(names.includes("model.layers.4.mlp.down_proj.weight"));
    for (const k of ["model.embed_tokens.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight"]) {
      assert.equal(f.tensors.get(k)?.dtype, "F32", k);
    }
    const g = await readGGUF(STORIES);
    // q_proj: dequantized, permuted back to GGUF order, close to the original (4-bit error)
    const st = await readBnb4bit(f, "model.layers.2.self_attn.q_proj.weight");
    assert.deepEqual(st.shape, [64, 64]);
    const back = permuteQK(dequantize4bit(st), 64, 64, 8, "hf_to_gguf");
    const orig = await g.readF32("blk.2.attn_q.weight");
    let err = 0, mag = 0;
    for (let i = 0; i < orig.length; i++) {
      err += Math.abs(back[i] - orig[i]);
      mag += Math.abs(orig[i]);
    }
    assert.ok(err / mag < 0.15, `relative error ${err / mag}`);
    await f.close();
    await assert.rejects(main(["--model", STORIES, "--out", out, "--type", "int4"]), /--type int4 must be nf4 or fp4/);
    await assert.rejects(main(["--model", STORIES, "--out", out, "--blocksize", "100"]), /blocksize 100 must be a power of two/);
  } finally {
    await Deno.remove(out);
  }
});
