/**
 * Our ggml codecs against llama.cpp's own: the libggml-base shared library that node-llama-cpp
 * ships (its prebuilt linux-x64 binary, a dev dependency) is loaded with Deno's FFI and its
 * exported `quantize_row_*_ref`, `ggml_quantize_chunk` (llama-quantize's entry), `dequantize_row_*`,
 * `ggml_*_to_fp32_row`, `ggml_fp32_to_bf16_row_ref` and
 * `ggml_get_type_traits` are called on the same inputs as ours. Quantized bytes and dequantized
 * f32 bits must be identical. (That build has no FMA, so its float code rounds every operation
 * as ours does.) Other platforms ship a different prebuilt: the test is skipped there.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dequantizeGgml, GGML, GGML_TYPES } from "../../src/io/ggml_quants.ts";
import { quantizeGgml } from "../../src/io/ggml_quantize.ts";
import { randn, randomGgmlBytes, rng } from "../helpers.ts";

const LIB = fileURLToPath(new URL("../../node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so", import.meta.url));
const available = Deno.build.os === "linux" && Deno.build.arch === "x86_64" && existsSync(LIB);

const QUANT_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"] as const;
/** ggml's C names: q4_0 ... q4_K (lower case but for the K). */
const cName = (t: string) => t.toLowerCase().replace("_k", "_K");

type RowFn = (src: ArrayBufferView, dst: ArrayBufferView, n: bigint) => void;

/**
 * libggml-base's row functions (src, dst, element count), ggml_quantize_chunk and
 * ggml_get_type_traits. Opened once per process and never closed: the library installs a
 * std::terminate handler when it loads and aborts the process if it finds its own handler
 * already there, which a second load at the same address does.
 */
let loaded: ReturnType<typeof load> | undefined;
function open() {
  return loaded ??= load();
}

function load() {
  const row = { parameters: ["buffer", "buffer", "i64"], result: "void" } as const;
  const names = ["ggml_fp16_to_fp32_row", "ggml_bf16_to_fp32_row", "ggml_fp32_to_bf16_row_ref"];
  for (const t of QUANT_TYPES) names.push(`quantize_row_${cName(t)}_ref`, `dequantize_row_${cName(t)}`);
  const lib = Deno.dlopen(LIB, {
    ggml_get_type_traits: { parameters: ["i32"], result: "pointer" },
    // (type, src, dst, start, nrows, n_per_row, imatrix) -> bytes: what llama-quantize calls
    ggml_quantize_chunk: { parameters: ["i32", "buffer", "buffer", "i64", "i64", "i64", "pointer"], result: "usize" },
    ...Object.fromEntries(names.map((n) => [n, row])),
  });
  const fns = lib.symbols as unknown as Record<string, RowFn>;
  return {
    call: (name: string, src: ArrayBufferView, dst: ArrayBufferView, n: number) => fns[name](src, dst, BigInt(n)),
    quantizeChunk: (type: number, src: Float32Array, dst: Uint8Array, rowLength: number) =>
      (lib.symbols.ggml_quantize_chunk as unknown as (...a: unknown[]) => number | bigint)(type, src, dst, 0n, BigInt(src.length / rowLength), BigInt(rowLength), null),
    traits: (type: number) => (lib.symbols.ggml_get_type_traits as unknown as (t: number) => Deno.PointerValue)(type),
  };
}

function bits(x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length);
}

/** Asserts equal f32 bit patterns, naming the first difference (a full diff of 10^5 values is slow). */
function assertSameBits(ours: Float32Array, theirs: Float32Array, what: string) {
  const a = bits(ours), b = bits(theirs);
  assert.equal(a.length, b.length, what);
  const i = a.findIndex((v, k) => v !== b[k]);
  assert.equal(i, -1, `${what}: element ${i} is ${ours[i]}, llama.cpp has ${theirs[i]}`);
}

/** Rows of 256 that visit the quantizers' branches: tiny, huge, all-zero, constant, one-sided, outliers. */
function awkwardRows(): Float32Array {
  const kinds = [
    (i: number, r: () => number) => randn(1, i)[0] * (r() < 0.02 ? 40 : 1),
    () => 0,
    () => 0.3,
    (i: number) => Math.abs(randn(1, i)[0]) + 0.5, // positive only: the K-quant min is clamped to 0
    (i: number) => -Math.abs(randn(1, i)[0]) - 0.5,
    (i: number) => randn(1, i)[0] * 1e-20, // below GROUP_MAX_EPS / f16 subnormals
    (i: number) => randn(1, i)[0] * 3e4,
    (i: number, r: () => number) => (r() < 0.1 ? randn(1, i)[0] : 0), // sparse
    (i: number) => (i % 32 === 5 ? -3 : 1e-3), // one outlier per 32-block
  ];
  const rows = 40, x = new Float32Array(rows * 256), r = rng(5);
  for (let row = 0; row < rows; row++) {
    const kind = kinds[row % kinds.length];
    for (let j = 0; j < 256; j++) x[row * 256 + j] = kind(row * 256 + j, r);
  }
  return x;
}

Deno.test({
  name: "llama.cpp: our ggml type table is libggml's (type_traits names, block sizes, bytes per block)",
  ignore: !available,
  fn() {
    const lib = open();
    for (const t of GGML_TYPES.values()) {
      const view = new Deno.UnsafePointerView(lib.traits(t.id)!);
      const name = new Deno.UnsafePointerView(view.getPointer(0)!).getCString();
      assert.deepEqual([name.toUpperCase(), Number(view.getBigInt64(8)), Number(view.getBigUint64(24))], [t.name, t.blockSize, t.typeSize], t.name);
    }
  },
});

for (const type of QUANT_TYPES) {
  Deno.test({
    name: `llama.cpp: ${type} quantizer bytes equal quantize_row_${cName(type)}_ref's and ggml_quantize_chunk's, dequantized values dequantize_row_${cName(type)}'s`,
    ignore: !available,
    fn() {
      const lib = open();
      const id = GGML[type];
      const t = GGML_TYPES.get(id)!;
      const x = awkwardRows();
      const ours = quantizeGgml(id, x, 256, type);
      const theirs = new Uint8Array(ours.byteLength);
      lib.call(`quantize_row_${cName(type)}_ref`, x, theirs, x.length);
      const firstDiff = ours.findIndex((v, i) => v !== theirs[i]);
      assert.equal(firstDiff, -1, `${type}: bytes differ from byte ${firstDiff} (block ${Math.floor(firstDiff / t.typeSize)}, row ${Math.floor((firstDiff / t.typeSize) * t.blockSize / 256)})`);
      // llama-quantize's entry point (no importance matrix) gives the same bytes
      const chunk = new Uint8Array(ours.byteLength);
      assert.equal(Number(lib.quantizeChunk(id, x, chunk, 256)), chunk.byteLength);
      assert.equal(ours.findIndex((v, i) => v !== chunk[i]), -1, `${type}: bytes differ from ggml_quantize_chunk's`);

      // Dequantize random bytes: every bit pattern of the quants, random finite f16 scales.
      const blocks = 4096 / t.blockSize * 8;
      const bytes = randomGgmlBytes(id, blocks, id);
      const want = new Float32Array(blocks * t.blockSize);
      lib.call(`dequantize_row_${cName(type)}`, bytes, want, want.length);
      assertSameBits(dequantizeGgml(id, bytes, want.length), want, `${type} dequantized`);
      // and the round trip of our own quantizer's bytes
      const back = new Float32Array(x.length);
      lib.call(`dequantize_row_${cName(type)}`, ours, back, back.length);
      assertSameBits(dequantizeGgml(id, ours, x.length), back, `${type} round trip`);
    },
  });
}

Deno.test({
  name: "llama.cpp: BF16 conversion equals ggml_fp32_to_bf16_row_ref (round to nearest even)",
  ignore: !available,
  fn() {
    const lib = open();
    const x = awkwardRows();
    // halfway cases: the low 16 bits exactly 0x8000, with an even and an odd kept half
    const ties = new Float32Array(new Uint32Array([0x3f808000, 0x3f818000, 0xbf808000, 0x00008000, 0x7f7f8000]).buffer);
    for (const v of [x, ties]) {
      const ours = quantizeGgml(GGML.BF16, v, 1, "BF16");
      const theirs = new Uint8Array(ours.byteLength);
      lib.call("ggml_fp32_to_bf16_row_ref", v, theirs, v.length);
      assert.equal(ours.findIndex((b, i) => b !== theirs[i]), -1, "BF16 bytes");
    }
  },
});

Deno.test({
  name: "llama.cpp: F16 and BF16 rows widen as ggml_fp16_to_fp32_row / ggml_bf16_to_fp32_row do",
  ignore: !available,
  fn() {
    const lib = open();
    const h = new Uint16Array(65536).map((_, i) => i); // every pattern, NaNs included
    for (const [type, fn] of [[GGML.F16, "ggml_fp16_to_fp32_row"], [GGML.BF16, "ggml_bf16_to_fp32_row"]] as const) {
      const want = new Float32Array(h.length);
      lib.call(fn, h, want, h.length);
      const ours = dequantizeGgml(type, new Uint8Array(h.buffer), h.length);
      // NaN payloads may differ; every other value must be bit-identical
      const a = bits(ours), b = bits(want);
      for (let i = 0; i < h.length; i++) {
        if (Number.isNaN(want[i])) assert.ok(Number.isNaN(ours[i]), `${fn} #${i}`);
        else assert.equal(a[i], b[i], `${fn} pattern 0x${i.toString(16)}`);
      }
    }
  },
});
