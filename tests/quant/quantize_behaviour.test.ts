/** Round-trip error (NF4 below FP4 and int4 absmax on Gaussian weights), WASM vs plain TS, bad input, GPU memory. */
import assert from "node:assert/strict";
import {
  dequantize4bit,
  dequantize4bitReference,
  quantize4bit,
  quantize4bitReference,
  type QuantType4,
} from "../../src/quant/mod.ts";
import { uploadQuantizedGroup } from "../../src/kernels/nf4_matmul.ts";
import { PeftError } from "../../src/errors.ts";
import { gridTables } from "../../src/quant/quantize.ts";
import { bucketizer } from "../../src/quant/tables.ts";
import { QuantWasm } from "../../src/quant/wasm.ts";
import { randn, testGpu } from "../helpers.ts";

function meanAbsErr(a: Float32Array, b: Float32Array) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

/** Naive symmetric 4-bit integer quantization with the same absmax blocks: round(x/absmax*7). */
function int4RoundTrip(x: Float32Array, blocksize: number) {
  const out = new Float32Array(x.length);
  for (let b = 0; b < x.length; b += blocksize) {
    const end = Math.min(x.length, b + blocksize);
    let m = 0;
    for (let i = b; i < end; i++) m = Math.max(m, Math.abs(x[i]));
    for (let i = b; i < end; i++) out[i] = m === 0 ? 0 : Math.round((x[i] / m) * 7) / 7 * m;
  }
  return out;
}

Deno.test("round trip on Gaussian weights: NF4 error below FP4 and naive int4 (same blocks)", () => {
  const x = randn(64 * 1000 + 37, 42, 0.02);
  const err = (type: QuantType4) => meanAbsErr(dequantize4bit(quantize4bit(x, { type })), x);
  const nf4 = err("nf4"), fp4 = err("fp4"), int4 = meanAbsErr(int4RoundTrip(x, 64), x);
  assert.ok(nf4 < fp4 && nf4 < int4, `nf4 ${nf4}, fp4 ${fp4}, int4 ${int4}`);
  // double quant changes the scales by well under 1%
  const dq = meanAbsErr(dequantize4bit(quantize4bit(x, { doubleQuant: true })), x);
  assert.ok(Math.abs(dq - nf4) < 0.01 * nf4, `double quant error ${dq} vs ${nf4}`);
});

/** Runs a check on both WASM builds (relaxed SIMD, plain SIMD), then restores the default. */
function onBothBuilds(check: () => void) {
  try {
    for (const v of ["relaxed", "simd"] as const) {
      assert.equal(QuantWasm.use(v).variant, v);
      check();
    }
  } finally {
    QuantWasm.use(null);
  }
}

Deno.test("WASM (SIMD) and plain TypeScript quantizers agree bit for bit", () => onBothBuilds(() => {
  for (const [n, bs, type] of [[1, 64, "nf4"], [4097, 32, "fp4"], [300_001, 4096, "nf4"], [65 * 128, 128, "fp4"]] as const) {
    const x = randn(n, n, 3);
    x[0] = 0;
    const st = quantize4bit(x, { type, blocksize: bs });
    const ref = quantize4bitReference(x, type, bs);
    assert.deepEqual(st.packed, ref.packed, `${type} n=${n} codes`);
    assert.deepEqual(st.absmax, ref.absmax, `${type} n=${n} absmax`);
    assert.deepEqual(dequantize4bit(st), dequantize4bitReference(ref.packed, ref.absmax, n, type, bs), `${type} n=${n} dequant`);
  }
  // more than one WASM chunk (2^18 values), trailing partial block
  const big = randn((1 << 18) * 2 + 99, 9);
  assert.deepEqual(quantize4bit(big).packed, quantize4bitReference(big, "nf4", 64).packed);
  // an all-zero block: codes 0, absmax 0, dequantizes to zeros
  const z = quantize4bit(new Float32Array(70));
  assert.ok(z.packed.every((b) => b === 0) && z.absmax!.every((a) => a === 0));
  assert.ok(dequantize4bit(z).every((v) => v === 0));
  // a NaN in the third block of a group of four (the batched absmax pass)
  const g = randn(64 * 9, 5);
  g[64 * 6 + 17] = NaN;
  assert.throws(() => quantize4bit(g, { name: "w" }), /w: element 401 is NaN/);
}));

/** The next f32 above (dir 1) or below (dir -1) v. */
function nextF32(v: number, dir: 1 | -1): number {
  const b = new Float32Array([v]), u = new Int32Array(b.buffer);
  if (v === 0) return dir * 1.4e-45;
  u[0] += (v > 0) === (dir > 0) ? 1 : -1;
  return b[0];
}

Deno.test("WASM and plain TypeScript agree on midpoints, their neighbours, cell edges and tiny scales", () => onBothBuilds(() => {
  for (const type of ["nf4", "fp4"] as const) {
    assert.ok(gridTables(bucketizer(type).mids), `${type}: the SIMD cell path applies`);
    // blocks of 64 whose absmax is 1 (so s = x exactly), filled with every midpoint, its f32
    // neighbours and their negatives, the cell edges (k +- 0.5) / 16 and their neighbours
    const vals: number[] = [];
    const special = [...bucketizer(type).mids];
    for (let k = -16; k <= 16; k++) special.push((k + 0.5) / 16, (k - 0.5) / 16, k / 16);
    for (const m of special) {
      for (const v of [m, nextF32(m, 1), nextF32(m, -1)]) if (Math.abs(v) <= 1) vals.push(v, -v);
    }
    const blocks: number[] = [];
    for (let i = 0; i < vals.length; i += 63) blocks.push(1, ...vals.slice(i, i + 63), ...new Array(Math.max(0, 63 - vals.slice(i, i + 63).length)).fill(0.25));
    // scaled copies (s = x * (1/a) rounds), a subnormal-absmax block (1/a overflows to inf)
    const x = new Float32Array([...blocks, ...blocks.map((v) => v * 3.7e-3), ...blocks.map((v) => v * 1e-39)]);
    const st = quantize4bit(x, { type });
    const ref = quantize4bitReference(x, type, 64);
    assert.deepEqual(st.absmax, ref.absmax, `${type} absmax`);
    for (let i = 0; i < ref.packed.length; i++) {
      if (st.packed[i] !== ref.packed[i]) assert.fail(`${type}: byte ${i} (values ${x[2 * i]}, ${x[2 * i + 1]}): ${st.packed[i]} != ${ref.packed[i]}`);
    }
  }
}));

Deno.test("bad input: non-finite weights name the tensor and element; bad blocksize, type, shape", () => {
  const x = randn(200, 1);
  x[133] = NaN;
  assert.throws(() => quantize4bit(x, { name: "blk.3.ffn_up.weight" }), (e: PeftError) =>
    e.code === "QUANT_NONFINITE" && /blk\.3\.ffn_up\.weight: element 133 is NaN/.test(e.message));
  x[133] = 1;
  x[7] = -Infinity;
  assert.throws(() => quantize4bit(x, { name: "w", blocksize: 32 }), /w: element 7 is -Infinity/);
  for (const bs of [16, 48, 8192, 64.5]) {
    assert.throws(() => quantize4bit(new Float32Array(8), { name: "w", blocksize: bs }), (e: PeftError) =>
      e.code === "QUANT_BAD_BLOCKSIZE" && e.message.includes(`blocksize ${bs}`));
  }
  assert.throws(() => quantize4bit(new Float32Array(8), { type: "int4" as QuantType4 }), /"nf4" or "fp4"/);
  assert.throws(() => quantize4bit(new Float32Array(8), { shape: [3, 3] }), (e: PeftError) => e.code === "QUANT_BAD_SHAPE");
});

Deno.test("GPU memory: double-quantized linear weights of a 512-wide config cost <= 4.13 bits a parameter", async () => {
  const gpu = await testGpu();
  // dim 512, 8 heads of 64, 4 kv heads, hidden 1536, 2 layers
  const shapes: [number, number][] = [];
  for (let l = 0; l < 2; l++) shapes.push([512, 512], [256, 512], [256, 512], [512, 512], [1536, 512], [1536, 512], [512, 1536]);
  const items = shapes.map((shape, i) => ({ state: quantize4bit(randn(shape[0] * shape[1], i, 0.02), { doubleQuant: true, shape }), shape }));
  const before = gpu.memoryByCategory().weights ?? 0;
  const heldBefore = gpu.bytesHeld();
  const qws = uploadQuantizedGroup(gpu, items);
  const bytes = (gpu.memoryByCategory().weights ?? 0) - before;
  const params = shapes.reduce((a, [o, i]) => a + o * i, 0);
  const bits = (bytes * 8) / params;
  console.log(`quantized base weights: ${bytes} bytes for ${params} params = ${bits.toFixed(4)} bits/param (held +${gpu.bytesHeld() - heldBefore})`);
  assert.ok(bits <= 4.13, `${bits} bits per parameter`);
  for (const q of qws) q.release();
});
