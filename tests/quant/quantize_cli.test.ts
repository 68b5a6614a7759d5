/**
 * The quantize CLI on stories260K: bnb layout under HF names, q/k in HF row order, plain tensors
 * as F32; its bits/param agree with what train prints for the same 4-bit base.
 */
import assert from "node:assert/strict";
import { main } from "../../src/cli/quantize.ts";
import { readGGUF } from "../../src/io/gguf.ts";
import { readSafetensors } from "../../src/io/safetensors.ts";
import { bnb4bitWeightNames, readBnb4bit } from "../../src/io/bnb4bit.ts";
import { dequantize4bit, fourBitPayload } from "../../src/quant/mod.ts";
import { quantizedBaseLines } from "../../src/cli/train.ts";
import { loadModel } from "../../src/api/model.ts";
import { permuteQK } from "../../src/model/config.ts";
import { STORIES, testGpu } from "../helpers.ts";

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
    await assert.rejects(main(["--model", STORIES, "--out", out, "--type", "int4"]), /--type must be one of nf4, fp4, got "int4"/);
    await assert.rejects(main(["--model", STORIES, "--out", out, "--blocksize", "100"]), /blocksize 100 must be a power of two/);
    await assert.rejects(main(["--model", STORIES, "--out", out, "--blocksize", "16"]), /--blocksize must be >= 32, got 16/);
  } finally {
    await Deno.remove(out);
  }
});

Deno.test("bits/param: quantize, train and the README count the same thing (codes + block scales)", async () => {
  const out = await Deno.makeTempFile({ suffix: ".safetensors" });
  const log = console.log;
  const lines: string[] = [];
  console.log = (s: string) => lines.push(s);
  try {
    await main(["--model", STORIES, "--out", out, "--double-quant"]);
  } finally {
    console.log = log;
    await Deno.remove(out);
  }
  const fileLine = lines.join("\n");
  const payload = /: ([\d.]+) bits\/param in codes and block scales; ([\d.]+) in the file/.exec(fileLine);
  assert.ok(payload, fileLine);
  const model = await loadModel(STORIES, { gpu: await testGpu(), quantize: "nf4", doubleQuant: true });
  try {
    const trainLine = quantizedBaseLines(model).join("\n");
    const gpu = /([\d.]+) bits\/param in codes and block scales; ([\d.]+) in GPU buffers/.exec(trainLine);
    assert.ok(gpu, trainLine);
    assert.equal(gpu[1], payload[1], "train and quantize agree on codes + scales");
    // Tables and padding only add: the file repeats the maps per weight, the GPU shares them.
    assert.ok(Number(payload[2]) > Number(gpu[2]) && Number(gpu[2]) > Number(gpu[1]), `${fileLine}\n${trainLine}`);
  } finally {
    model.close();
  }
  // README's figure for large weights: 4 + 8/64 + 32/(64*256), plus one f32 offset per weight.
  assert.equal(fourBitPayload(512 * 512, { blocksize: 64, doubleQuant: true }).bits.toFixed(3), "4.127");
  assert.equal(fourBitPayload(512 * 512, { blocksize: 64, doubleQuant: false }).bits.toFixed(3), "4.500");
});
