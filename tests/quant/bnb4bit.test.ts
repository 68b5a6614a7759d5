/**
 * The bitsandbytes safetensors layout: a file written the way bnb/transformers save a 4-bit
 * linear layer (tests/fixtures/nf4/bnb_layout.safetensors, from scripts/dev/make_nf4_fixtures.py)
 * loads into the same state our quantizer produces, and what we write is byte-identical to it.
 */
import assert from "node:assert/strict";
import { bnb4bitQuantStateJSON, bnb4bitTensors, bnb4bitWeightNames, pyFloatRepr, readBnb4bit } from "../../src/io/bnb4bit.ts";
import { encodeSafetensors, readSafetensors, type SafetensorsWriteTensor } from "../../src/io/safetensors.ts";
import { blockAbsmax, dequantize4bit, quantize4bit, quantizeAbsmax, type QuantState4bit } from "../../src/quant/mod.ts";
import { PeftError } from "../../src/errors.ts";

const FIXTURE = new URL("../fixtures/nf4/bnb_layout.safetensors", import.meta.url).pathname;
const Q = "model.layers.0.self_attn.q_proj.weight";
const D = "model.layers.0.mlp.down_proj.weight";

function lcgInput(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (2 * (s / 4294967296) - 1) ** 3 * scale;
  }
  return out;
}
const ours = (): Record<string, QuantState4bit> => ({
  [Q]: quantize4bit(lcgInput(960, 8, 0.1), { type: "nf4", blocksize: 32, doubleQuant: true, shape: [24, 40] }),
  [D]: quantize4bit(lcgInput(63, 9, 1.0), { type: "fp4", blocksize: 64, shape: [7, 9] }),
});
const concat = (chunks: Uint8Array[]) => {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let o = 0;
  for (const c of chunks) out.set(c, (o += c.length) - c.length);
  return out;
};

Deno.test("bnb layout: a bnb-written checkpoint loads into the state our quantizer makes", async () => {
  const f = await readSafetensors(FIXTURE);
  assert.deepEqual(bnb4bitWeightNames(f), [D, Q]);
  const mine = ours();
  for (const name of [Q, D]) {
    const st = await readBnb4bit(f, name);
    const want = mine[name];
    assert.deepEqual(st.shape, want.shape);
    assert.equal(st.type, want.type);
    assert.equal(st.dtype, "float32");
    assert.deepEqual(st.packed, want.packed);
    assert.deepEqual(st.absmax, want.absmax);
    if (want.nested) {
      // torch's f32 mean and ours (f64 sum, rounded once) may differ by an ulp; with bnb's offset
      // our nested constants are bit-identical to bnb's
      const o = st.nested!.offset;
      assert.ok(Math.abs(o - want.nested.offset) <= Math.abs(o) * 2 ** -23, `offset ${want.nested.offset} vs bnb ${o}`);
      const absmax = quantize4bit(lcgInput(960, 8, 0.1), { type: "nf4", blocksize: 32 }).absmax!;
      assert.deepEqual(quantizeAbsmax(absmax, undefined, o), st.nested);
      assertCloseRel(blockAbsmax(st), blockAbsmax(want), 1e-6);
    } else {
      assert.deepEqual(dequantize4bit(st), dequantize4bit(want));
    }
  }
  await f.close();
});

function assertCloseRel(a: Float32Array, b: Float32Array, rtol: number) {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= rtol * Math.abs(b[i]), `[${i}] ${a[i]} vs ${b[i]}`);
}

Deno.test("bnb layout: what we write matches bnb's tensors byte for byte (quant_state JSON included)", async () => {
  const f = await readSafetensors(FIXTURE);
  // the same states (bnb's offset for the double-quantized one), written by us
  const mine = { [Q]: await readBnb4bit(f, Q), [D]: ours()[D] };
  const tensors: SafetensorsWriteTensor[] = [...bnb4bitTensors(Q, mine[Q]), ...bnb4bitTensors(D, mine[D])];
  assert.deepEqual(tensors.map((t) => t.name).sort(), [...f.tensors.keys()].sort());
  for (const t of tensors) {
    const info = f.tensors.get(t.name)!;
    assert.equal(t.dtype, info.dtype, t.name);
    assert.deepEqual(t.shape, info.shape, t.name);
    assert.deepEqual(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), await f.read(t.name), t.name);
  }
  // round trip through our own writer and reader
  const back = await readSafetensors(concat(encodeSafetensors(tensors)), "mem.safetensors");
  assert.deepEqual((await readBnb4bit(back, Q)).nested, mine[Q].nested);
  await f.close();
});

Deno.test("bnb layout: python float repr and quant_state JSON", () => {
  assert.equal(pyFloatRepr(0.1), "0.1");
  assert.equal(pyFloatRepr(Math.fround(0.1)), "0.10000000149011612");
  assert.equal(pyFloatRepr(1e-5), "1e-05");
  assert.equal(pyFloatRepr(2), "2.0");
  assert.equal(pyFloatRepr(1.5e16), "1.5e+16");
  const st = quantize4bit(new Float32Array([1, 2, 3, 4]), { doubleQuant: true, shape: [2, 2] });
  assert.match(bnb4bitQuantStateJSON(st), /^\{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": \[2, 2\], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 4\.0\}$/);
});

async function broken(edit: (t: SafetensorsWriteTensor[]) => SafetensorsWriteTensor[]) {
  const mine = ours();
  const bytes = concat(encodeSafetensors(edit(bnb4bitTensors(Q, mine[Q]))));
  return await readSafetensors(bytes, "broken.safetensors");
}

Deno.test("bnb layout: missing fields, missing tensors and shape mismatches are named", async () => {
  const json = (s: string) => new TextEncoder().encode(s);
  const withState = (s: string) => (ts: SafetensorsWriteTensor[]) =>
    ts.map((t) => t.name.includes("quant_state") ? { ...t, shape: [json(s).length], data: json(s) } : t);
  let f = await broken(withState(`{"quant_type": "nf4", "dtype": "float32", "shape": [24, 40]}`));
  await assert.rejects(readBnb4bit(f, Q), (e: PeftError) => e.code === "BNB_BAD_QUANT_STATE" && /lacks the field "blocksize"/.test(e.message));
  f = await broken(withState(`{"quant_type": "nf4", "blocksize": 32, "dtype": "float32", "shape": [24, 41], "nested_blocksize": 256, "nested_offset": 0.1}`));
  await assert.rejects(readBnb4bit(f, Q), (e: PeftError) => e.code === "BNB_SHAPE_MISMATCH" && /q_proj\.weight holds 480 bytes/.test(e.message));
  f = await broken(withState(`{"quant_type": "nf4", "blocksize": 32, "dtype": "float32", "shape": [24, 40], "nested_blocksize": 256}`));
  await assert.rejects(readBnb4bit(f, Q), /lacks the field "nested_offset"/);
  f = await broken(withState(`{"quant_type": "nf4", "blocksize": 48, "dtype": "float32", "shape": [24, 40]}`));
  await assert.rejects(readBnb4bit(f, Q), (e: PeftError) => e.code === "QUANT_BAD_BLOCKSIZE");
  f = await broken((ts) => ts.filter((t) => !t.name.endsWith(".nested_quant_map")));
  await assert.rejects(readBnb4bit(f, Q), (e: PeftError) => e.code === "BNB_MISSING_TENSOR" && /nested_quant_map/.test(e.message));
  f = await broken((ts) => ts.map((t) => t.name.endsWith(".absmax") ? { ...t, shape: [29], data: (t.data as Uint8Array).subarray(0, 29) } : t));
  await assert.rejects(readBnb4bit(f, Q), (e: PeftError) => e.code === "BNB_SHAPE_MISMATCH" && /absmax is U8 \[29\]/.test(e.message));
  f = await broken((ts) => ts.filter((t) => !t.name.includes("quant_state")));
  await assert.rejects(readBnb4bit(f, Q), (e: PeftError) => e.code === "BNB_MISSING_TENSOR");
});
