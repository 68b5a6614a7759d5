/**
 * ggml block formats on the CPU: hand-built blocks decode to the values the format's formula
 * gives (blocks packed here, independently of the codec), quantize -> dequantize errors stay in
 * each type's bound, awkward row lengths are refused, and GGUF files carry quantized tensors.
 * (Bit-exactness against llama.cpp's own code: ggml_quants_llamacpp.test.ts.)
 */
import assert from "node:assert/strict";
import { f32ToF16 } from "../../src/io/bytes.ts";
import { dequantizeGgml, GGML, GGML_TYPES, ggmlTensorBytes } from "../../src/io/ggml_quants.ts";
import { GGML_QUANTIZABLE, quantizeGgml } from "../../src/io/ggml_quantize.ts";
import { encodeGGUF, readGGUF } from "../../src/io/gguf.ts";
import { concatBytes, randn, rng, isErr } from "../helpers.ts";

const fr = Math.fround;

Deno.test("ggml type table: ids, block sizes and bytes per block are ggml's (sizes from the block structs)", () => {
  const half = 2, QK_K = 256;
  const expected: [keyof typeof GGML, number, number, number][] = [
    ["F32", 0, 1, 4], ["F16", 1, 1, 2], ["BF16", 30, 1, 2],
    ["Q4_0", 2, 32, half + 16], ["Q4_1", 3, 32, 2 * half + 16], ["Q5_0", 6, 32, half + 4 + 16],
    ["Q5_1", 7, 32, 2 * half + 4 + 16], ["Q8_0", 8, 32, half + 32],
    ["Q4_K", 12, QK_K, 2 * half + 12 + QK_K / 2], ["Q5_K", 13, QK_K, 2 * half + 12 + QK_K / 2 + QK_K / 8],
    ["Q6_K", 14, QK_K, half + QK_K / 16 + (3 * QK_K) / 4],
  ];
  for (const [name, id, block, bytes] of expected) {
    const t = GGML_TYPES.get(id)!;
    assert.deepEqual([GGML[name], t.name, t.blockSize, t.typeSize, t.decodes], [id, name, block, bytes, true], name);
  }
  // bits per weight as the formats advertise them
  const bits = (id: number) => (8 * GGML_TYPES.get(id)!.typeSize) / GGML_TYPES.get(id)!.blockSize;
  assert.deepEqual([GGML.Q8_0, GGML.Q4_0, GGML.Q4_K, GGML.Q5_K, GGML.Q6_K].map(bits), [8.5, 4.5, 4.5, 5.5, 6.5625]);
});

// ------------------------------------------------------------ hand-built blocks

/** A block builder: fills `b` (the block's bytes) from integer levels, returns expected values. */
type Build = (b: Uint8Array, v: DataView, r: () => number) => number[];
const int = (r: () => number, n: number) => Math.floor(r() * n);
const setHalf = (v: DataView, o: number, x: number) => v.setUint16(o, f32ToF16(x), true);

const BUILDERS: Record<string, Build> = {
  Q8_0(_b, v, r) {
    const d = -0.375;
    setHalf(v, 0, d);
    return Array.from({ length: 32 }, (_, j) => {
      const q = int(r, 256) - 128;
      v.setInt8(2 + j, q);
      return q * d;
    });
  },
  Q4_0(b, v, r) {
    const d = 0.75, q = Array.from({ length: 32 }, () => int(r, 16));
    setHalf(v, 0, d);
    for (let j = 0; j < 16; j++) b[2 + j] = q[j] | (q[j + 16] << 4);
    return q.map((x) => (x - 8) * d);
  },
  Q4_1(b, v, r) {
    const d = 0.1875, m = -1.25, q = Array.from({ length: 32 }, () => int(r, 16));
    setHalf(v, 0, d), setHalf(v, 2, m);
    for (let j = 0; j < 16; j++) b[4 + j] = q[j] | (q[j + 16] << 4);
    return q.map((x) => fr(x * d + m));
  },
  Q5_0(b, v, r) {
    const d = -0.0625, q = Array.from({ length: 32 }, () => int(r, 32));
    setHalf(v, 0, d);
    for (let j = 0; j < 16; j++) b[6 + j] = (q[j] & 15) | ((q[j + 16] & 15) << 4);
    // the 5th bits: bit e of the little-endian u32 at byte 2 is element e's
    for (let e = 0; e < 32; e++) if (q[e] & 16) b[2 + (e >> 3)] |= 1 << (e & 7);
    return q.map((x) => (x - 16) * d);
  },
  Q5_1(b, v, r) {
    const d = 0.03125, m = 0.5, q = Array.from({ length: 32 }, () => int(r, 32));
    setHalf(v, 0, d), setHalf(v, 2, m);
    for (let j = 0; j < 16; j++) b[8 + j] = (q[j] & 15) | ((q[j + 16] & 15) << 4);
    for (let e = 0; e < 32; e++) if (q[e] & 16) b[4 + (e >> 3)] |= 1 << (e & 7);
    return q.map((x) => fr(x * d + m));
  },
  Q4_K: (b, v, r) => kBlock(b, v, r, 4),
  Q5_K: (b, v, r) => kBlock(b, v, r, 5),
  Q6_K(b, v, r) {
    const d = 0.0078125, sc = Array.from({ length: 16 }, () => int(r, 256) - 128), q = Array.from({ length: 256 }, () => int(r, 64));
    setHalf(v, 208, d);
    sc.forEach((s, i) => v.setInt8(192 + i, s));
    for (let e = 0; e < 256; e++) {
      // half h of 128, quarter qq of 32, lane l: low 4 bits in a nibble of ql, high 2 bits in qh
      const h = e >> 7, qq = (e >> 5) & 3, l = e & 31;
      b[64 * h + 32 * (qq & 1) + l] |= (q[e] & 15) << (qq >= 2 ? 4 : 0);
      b[128 + 32 * h + l] |= (q[e] >> 4) << (2 * qq);
    }
    return q.map((x, e) => fr(d * sc[e >> 4]) * (x - 32));
  },
};

/** Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes. */
function kBlock(b: Uint8Array, v: DataView, r: () => number, bits: number): number[] {
  const d = 0.0390625, dmin = -0.0146484375; // f16-exact
  // sub-blocks 4..7 get values >= 16 so their high 2 bits are exercised
  const sc = Array.from({ length: 8 }, (_, s) => (s >= 4 ? 16 + int(r, 48) : int(r, 64)));
  const mn = Array.from({ length: 8 }, (_, s) => (s >= 4 ? 32 + int(r, 32) : int(r, 64)));
  const q = Array.from({ length: 256 }, () => int(r, 1 << bits));
  setHalf(v, 0, d), setHalf(v, 2, dmin);
  for (let s = 0; s < 4; s++) {
    b[4 + s] = sc[s] | ((sc[s + 4] >> 4) << 6);
    b[8 + s] = mn[s] | ((mn[s + 4] >> 4) << 6);
    b[12 + s] = (sc[s + 4] & 15) | ((mn[s + 4] & 15) << 4);
  }
  const qs = bits === 4 ? 16 : 48;
  for (let e = 0; e < 256; e++) {
    // chunk c of 64: sub-block 2c in the low nibbles of 32 bytes, sub-block 2c+1 in their high nibbles
    const c = e >> 6, r64 = e & 63;
    b[qs + 32 * c + (r64 & 31)] |= (q[e] & 15) << (r64 >= 32 ? 4 : 0);
    if (bits === 5) b[16 + (r64 & 31)] |= (q[e] >> 4) << (e >> 5);
  }
  return q.map((x, e) => fr(fr(d * sc[e >> 5]) * x - fr(dmin * mn[e >> 5])));
}

for (const [name, build] of Object.entries(BUILDERS)) {
  Deno.test(`ggml ${name}: hand-built blocks decode to the format's formula`, () => {
    const t = GGML_TYPES.get(GGML[name as keyof typeof GGML])!;
    const r = rng(t.id);
    const blocks = 3;
    const bytes = new Uint8Array(blocks * t.typeSize);
    const expected: number[] = [];
    for (let i = 0; i < blocks; i++) {
      const b = bytes.subarray(i * t.typeSize, (i + 1) * t.typeSize);
      expected.push(...build(b, new DataView(b.buffer, b.byteOffset, b.byteLength), r));
    }
    assert.deepEqual(Array.from(dequantizeGgml(t.id, bytes, blocks * t.blockSize)), expected);
  });
}

Deno.test("ggml BF16 and F16 decode to the f32 values they hold", () => {
  // values with at most 8 significant bits are exact in bf16 (the top half of their f32 bits)
  const x = new Float32Array([1, -2.5, 3.140625, 0, -0, 2 ** -130, 65280, -Infinity]);
  const bf = new Uint16Array(new Uint32Array(x.buffer).map((u) => u >>> 16));
  assert.deepEqual(dequantizeGgml(GGML.BF16, new Uint8Array(bf.buffer), x.length), x);
  const h = new Uint16Array([0x3c00, 0xc100, 0x0001, 0x7bff]);
  assert.deepEqual(Array.from(dequantizeGgml(GGML.F16, new Uint8Array(h.buffer), 4)), [1, -2.5, 2 ** -24, 65504]);
});

// ------------------------------------------------------------ round trips

/**
 * Bounds for N(0, 1) rows of 256 (block amax ~ 2.5σ for 32-blocks). Legacy types have a hard bound
 * on the largest error in a block relative to its largest |x|: Q8_0 half a step of amax/127 plus
 * the f16 rounding of d over 127 steps (0.5 + 127·2^-11)/127; Q4_0 / Q5_0 one full step
 * (amax/8, amax/16: the side opposite the signed max is clipped at 2^(b-1) - 1 steps); Q4_1 / Q5_1
 * half a step of (max - min)/(2^b - 1) <= 2·amax/(2^b - 1), plus f16 rounding of d and m (5%).
 * K-quants choose scales by weighted least squares, so they bound the relative RMS error instead
 * (the values measured on this data plus ~5%); each beats the legacy type of its width.
 */
const ROUND_TRIP: Record<string, { maxRel?: number; rms: number }> = {
  Q8_0: { maxRel: (0.5 + 127 * 2 ** -11) / 127, rms: 0.0056 },
  Q4_0: { maxRel: (1 / 8) * (1 + 2 ** -10), rms: 0.09 },
  Q5_0: { maxRel: (1 / 16) * (1 + 2 ** -10), rms: 0.045 },
  Q4_1: { maxRel: (1 / 15) * 1.05, rms: 0.082 },
  Q5_1: { maxRel: (1 / 31) * 1.05, rms: 0.04 },
  Q4_K: { rms: 0.075 },
  Q5_K: { rms: 0.038 },
  Q6_K: { rms: 0.0186 },
  BF16: { maxRel: 2 ** -8, rms: 2 ** -9 }, // round to nearest, 8 significant bits: half an ulp is <= 2^-8 of the value
};

const rmsOf = new Map<string, number>();
for (const [name, bound] of Object.entries(ROUND_TRIP)) {
  Deno.test(`ggml ${name}: quantize -> dequantize error within the type's bound`, () => {
    const t = GGML_TYPES.get(GGML[name as keyof typeof GGML])!;
    const rows = 64, cols = 512;
    const x = randn(rows * cols, 17);
    const q = quantizeGgml(t.id, x, cols, name);
    assert.equal(q.byteLength, ggmlTensorBytes(t.id, [rows, cols], name));
    const y = dequantizeGgml(t.id, q, x.length);
    let se = 0, sx = 0, worst = 0;
    for (let b = 0; b < x.length / t.blockSize; b++) {
      let amax = 0, emax = 0;
      for (let j = b * t.blockSize; j < (b + 1) * t.blockSize; j++) {
        amax = Math.max(amax, Math.abs(x[j]));
        emax = Math.max(emax, Math.abs(x[j] - y[j]));
        se += (x[j] - y[j]) ** 2;
        sx += x[j] ** 2;
      }
      worst = Math.max(worst, emax / amax);
    }
    const rms = Math.sqrt(se / sx);
    rmsOf.set(name, rms);
    assert.ok(rms <= bound.rms, `${name}: relative RMS error ${rms} > ${bound.rms}`);
    if (bound.maxRel) assert.ok(worst <= bound.maxRel, `${name}: block max error ${worst}·amax > ${bound.maxRel}`);
    // an all-zero block and a constant block survive exactly; a block of one outlier keeps it
    const special = new Float32Array(2 * 256);
    special.fill(0.25, 256, 512);
    special[3] = -7;
    const back = dequantizeGgml(t.id, quantizeGgml(t.id, special, 256), special.length);
    // scales and mins are f16 (relative rounding 2^-11) times small integers: within 7·2^-11
    const tol = 7 * 2 ** -11;
    assert.ok(Math.abs(back[3] + 7) <= tol, `${name}: lone outlier -7 came back as ${back[3]}`);
    for (let i = 0; i < 256; i++) if (i !== 3) assert.ok(Math.abs(back[i]) <= tol, `${name}: zero beside an outlier came back as ${back[i]}`);
    for (let i = 256; i < 512; i++) assert.ok(Math.abs(back[i] - 0.25) <= 0.25 * 2 ** -10, `${name}: constant block, got ${back[i]}`);
  });
}

Deno.test("ggml K-quants are more accurate than the legacy types of their width", () => {
  for (const name of Object.keys(ROUND_TRIP)) if (!rmsOf.has(name)) return; // run with the round trips
  const e = (n: string) => rmsOf.get(n)!;
  assert.ok(e("Q4_K") < e("Q4_0") && e("Q4_K") < e("Q4_1"), "Q4_K vs Q4_0/Q4_1");
  assert.ok(e("Q5_K") < e("Q5_0"), "Q5_K vs Q5_0");
  assert.ok(e("Q8_0") < e("Q6_K") && e("Q6_K") < e("Q5_K") && e("Q5_K") < e("Q4_K"), "more bits, less error");
});

// ------------------------------------------------------------ refusals

Deno.test("ggml: row lengths that are not whole blocks, unknown types and non-finite values are refused by name", () => {
  const x = new Float32Array(96 * 4);
  assert.equal(quantizeGgml(GGML.Q8_0, x, 96).byteLength, 12 * 34, "rows of 3 blocks are fine");
  assert.throws(() => quantizeGgml(GGML.Q8_0, x, 48, "blk.0.ffn_up.weight"), isErr("QUANT_BAD_SHAPE", "blk.0.ffn_up.weight", "Q8_0", "multiples of 32", "rows of 48"));
  assert.throws(() => quantizeGgml(GGML.Q4_K, new Float32Array(288), 288, "w"), isErr("QUANT_BAD_SHAPE", "w", "Q4_K", "multiples of 256"));
  assert.throws(() => quantizeGgml(GGML.Q4_K, new Float32Array(600), 256, "w"), isErr("QUANT_BAD_SHAPE", "600 values"));
  assert.throws(() => quantizeGgml(GGML.Q8_1, x, 96, "w"), isErr("QUANT_UNSUPPORTED", "Q8_1", "Q4_K"));
  assert.throws(() => quantizeGgml(GGML.F32, x, 96, "w"), isErr("QUANT_UNSUPPORTED", "F32"));
  assert.throws(() => quantizeGgml(GGML.BF16, new Float32Array([1, Infinity]), 2, "w"), isErr("QUANT_BAD_VALUE", "#1", "Infinity"));
  assert.throws(() => quantizeGgml(GGML.Q4_0, new Float32Array([...new Array(31).fill(0), NaN]), 32, "w"), isErr("QUANT_BAD_VALUE", "w", "#31", "NaN"));
  assert.throws(() => dequantizeGgml(GGML.Q6_K, new Uint8Array(210), 128, "t"), isErr("GGUF_BAD_TENSOR", "t", "128", "Q6_K"));
  assert.throws(() => dequantizeGgml(GGML.Q6_K, new Uint8Array(209), 256, "t"), isErr("GGUF_TRUNCATED", "t", "210 bytes"));
  assert.throws(() => dequantizeGgml(GGML.Q2_K, new Uint8Array(84), 256, "t"), isErr("GGUF_UNSUPPORTED_TYPE", "t", "Q2_K", "Q4_K"));
  assert.throws(() => ggmlTensorBytes(GGML.Q5_0, [4, 40], "f.gguf: tensor a"), isErr("GGUF_BAD_TENSOR", "f.gguf: tensor a", "40", "Q5_0's block of 32"));
  assert.throws(() => ggmlTensorBytes(99, [4, 40], "f.gguf: tensor a"), isErr("GGUF_UNSUPPORTED_TYPE", "type 99"));
  assert.equal(GGML_QUANTIZABLE.length, 9);
});

Deno.test("gguf: quantized tensors are written and read back raw, and readF32 dequantizes them", async () => {
  const tensors = [
    { name: "token_embd.weight", shape: [5, 512], type: GGML.Q4_K },
    { name: "blk.0.attn_q.weight", shape: [3, 96], type: GGML.Q8_0 },
    { name: "blk.0.ffn_up.weight", shape: [7, 256], type: GGML.Q6_K },
    { name: "blk.0.ffn_down.weight", shape: [2, 64], type: GGML.Q5_1 },
  ].map((t, i) => ({ ...t, f32: randn(t.shape[0] * t.shape[1], i), bytes: quantizeGgml(t.type, randn(t.shape[0] * t.shape[1], i), t.shape[1]) }));
  const bf16 = new Uint16Array([0x3f80, 0xc020, 0x0000]);
  const parts = encodeGGUF({
    metadata: {},
    tensors: [
      ...tensors.map((t) => ({ name: t.name, shape: t.shape, data: t.bytes, ggmlType: t.type })),
      { name: "output_norm.weight", shape: [3], data: bf16, ggmlType: GGML.BF16 },
    ],
  });
  const g = await readGGUF(concatBytes(parts), "q.gguf");
  try {
    for (const t of tensors) {
      const raw = await g.readRaw(t.name);
      assert.deepEqual([raw.shape, raw.ggmlType, raw.byteLength], [t.shape, t.type, t.bytes.byteLength], t.name);
      assert.deepEqual(raw.bytes, t.bytes, t.name);
      assert.deepEqual(await g.readF32(t.name), dequantizeGgml(t.type, t.bytes, t.f32.length), t.name);
    }
    assert.deepEqual(Array.from(await g.readF32("output_norm.weight")), [1, -2.5, 0]);
  } finally {
    await g.close();
  }
  assert.throws(
    () => encodeGGUF({ metadata: {}, tensors: [{ name: "w", shape: [2, 40], data: new Uint8Array(2 * 34), ggmlType: GGML.Q8_0 }] }),
    isErr("GGUF_BAD_TENSOR", "tensor w", "40", "block of 32"),
  );
  assert.throws(
    () => encodeGGUF({ metadata: {}, tensors: [{ name: "w", shape: [2, 32], data: new Uint8Array(67), ggmlType: GGML.Q8_0 }] }),
    isErr("GGUF_BAD_TENSOR", "tensor w", "needs 68 bytes", "67"),
  );
  assert.throws(() => encodeGGUF({ metadata: {}, tensors: [{ name: "w", shape: [4], data: new Uint8Array(4) }] }), isErr("GGUF_BAD_TENSOR", "w", "ggmlType"));
});
