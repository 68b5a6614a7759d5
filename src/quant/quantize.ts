/**
 * Blockwise 4-bit (NF4 / FP4) quantization with optional double quantization of the absmax
 * constants, byte-identical to bitsandbytes (functional.py quantize_4bit, backends/default/ops.py).
 * The number crunching runs in WASM (wasm/quant); this file validates, streams chunks of whole
 * blocks through it, and does the small double-quant bookkeeping.
 *
 * Double quant (bnb compress_statistics): offset = mean(absmax), then (absmax - offset) is
 * quantized blockwise (256) to 8 bits with the dynamic map. Our mean sums in f64 and rounds once
 * (fround(sum / n)); torch sums f32 in its own (vectorised, pairwise) order, so the offset may
 * differ from bnb's by an ulp on some inputs.
 */
import { check, PeftError } from "../errors.ts";
import { bucketizer, codeTable, DYNAMIC_MAP, DYNAMIC_MIDS, type QuantType4 } from "./tables.ts";
import { CHUNK, QuantWasm } from "./wasm.ts";

export type SourceDType = "float32" | "float16" | "bfloat16";

/** Absmax constants quantized to 8 bits (bnb's state2 + offset). */
export interface NestedAbsmax {
  /** One 8-bit code per 4-bit block. */
  codes: Uint8Array;
  /** One f32 absmax per `blocksize` codes. */
  absmax: Float32Array;
  /** Mean of the f32 absmax values, added back after dequantizing. */
  offset: number;
  blocksize: number;
  /** The 256-entry code map (bnb's nested_quant_map). */
  map: Float32Array;
}

export interface QuantState4bit {
  type: QuantType4;
  blocksize: number;
  /** Number of quantized values. */
  n: number;
  /** Original tensor shape (product n); [n] when none was given. */
  shape: number[];
  /** dtype the values had before quantization (bnb records it as quant_state `dtype`). */
  dtype: SourceDType;
  /** ceil(n/2) bytes, two codes a byte, first in the high nibble. */
  packed: Uint8Array;
  /** The 16-entry code table (bnb's quant_map). */
  code: Float32Array;
  /** f32 absmax per block when not double-quantized, else null. */
  absmax: Float32Array | null;
  nested: NestedAbsmax | null;
}

export interface Quantize4bitOptions {
  type?: QuantType4;
  /** Values per absmax block: a power of two in 32..4096 (default 64). */
  blocksize?: number;
  doubleQuant?: boolean;
  /** Tensor name for error messages. */
  name?: string;
  shape?: number[];
  /**
   * Output arrays to fill instead of allocating (ceil(n/2) bytes and ceil(n/blocksize) f32):
   * streaming many tensors through the same buffers skips the page faults of fresh arrays.
   */
  into?: { packed: Uint8Array; absmax: Float32Array };
}

export const NESTED_BLOCKSIZE = 256;

/**
 * Bytes of one 4-bit weight's own payload: the packed codes (4 bits a value) and its block scales
 * (one f32 per block, or with double quant one 8-bit code per block plus one f32 per 256 blocks
 * and the f32 offset). The shared code maps (16 and 256 f32) are not included: a file stores them
 * beside every weight, the GPU once per model. `bits` = 8 * (codes + scales) / n; for large
 * weights 4.5 at blocksize 64, and 4 + 8/64 + 32/(64*256) = 4.127 with double quant.
 */
export function fourBitPayload(n: number, o: { blocksize: number; doubleQuant: boolean }): { codes: number; scales: number; bits: number } {
  const blocks = Math.ceil(n / o.blocksize);
  const codes = Math.ceil(n / 2);
  const scales = o.doubleQuant ? blocks + 4 * Math.ceil(blocks / NESTED_BLOCKSIZE) + 4 : 4 * blocks;
  return { codes, scales, bits: (8 * (codes + scales)) / n };
}

export function checkBlocksize(blocksize: number, what: string): void {
  check(
    Number.isInteger(blocksize) && blocksize >= 32 && blocksize <= 4096 && (blocksize & (blocksize - 1)) === 0,
    "QUANT_BAD_BLOCKSIZE",
    `${what}: blocksize ${blocksize} must be a power of two from 32 to 4096`,
  );
}

// table area layout (see QuantWasm): byte offsets from `tables`
const T_MIDS4 = 0, T_RANK = 64, T_PLANES = 128, T_CODE = 192, T_DMIDS = 256, T_DMAP = 1280, T_GRID = 2304;
// data area layout, in bytes from `data`
const D_IN = 0, D_IN16 = CHUNK * 4, D_PACKED = D_IN16 + CHUNK * 2, D_ABSMAX = D_PACKED + CHUNK / 2, D_END = D_ABSMAX + CHUNK / 8;

/**
 * Cell tables of the WASM fast path (wasm/quant/index.ts, gridCodes16): cell(w) =
 * 15 + round_f32(w) for w = 16 v; per cell the number of midpoints in lower cells (base[32]),
 * then the byte planes of 16 * mids (16 entries, +inf past the last). Null when some cell holds
 * two midpoints (not so for NF4 or FP4; the kernel then takes its compare-every-midpoint path).
 */
export function gridTables(mids: Float32Array): Uint8Array | null {
  const f = Math.fround;
  const cell = (v: number) => f(f(v * 16) + 12582927) - 12582912;
  if (mids.length > 15) return null;
  const cells = Array.from(mids, cell);
  for (let j = 0; j < cells.length; j++) {
    if (cells[j] < -1 || cells[j] > 31 || (j > 0 && cells[j] <= cells[j - 1])) return null;
  }
  const base = new Uint8Array(32);
  for (let c = 0; c < 32; c++) base[c] = cells.filter((k) => k < c).length;
  const mid = new Float32Array(16).fill(Infinity);
  for (let j = 0; j < mids.length; j++) mid[j] = f(mids[j] * 16);
  const out = new Uint8Array(96);
  out.set(base);
  const bytes = new Uint8Array(mid.buffer);
  for (let c = 0; c < 16; c++) for (let k = 0; k < 4; k++) out[32 + 16 * k + c] = bytes[c * 4 + k];
  return out;
}

const gridCache = new Map<QuantType4, Uint8Array | null>();

/** Writes the 4-bit tables; returns the midpoint count and the grid tables' address (0: none). */
function writeTables4(w: QuantWasm, type: QuantType4, code: Float32Array): { nMids: number; grid: number } {
  const b = bucketizer(type);
  if (!gridCache.has(type)) gridCache.set(type, gridTables(b.mids));
  const grid = gridCache.get(type)!;
  if (grid) w.u8(w.tables + T_GRID, grid.length).set(grid);
  const mids = w.f32(w.tables + T_MIDS4, 16);
  mids.fill(Infinity);
  mids.set(b.mids);
  w.u8(w.tables + T_RANK, 16).set(b.rankToCode);
  w.f32(w.tables + T_CODE, 16).set(code);
  const bytes = new Uint8Array(code.buffer, code.byteOffset, 64);
  const planes = w.u8(w.tables + T_PLANES, 64);
  for (let i = 0; i < 16; i++) for (let k = 0; k < 4; k++) planes[k * 16 + i] = bytes[i * 4 + k];
  return { nMids: b.mids.length, grid: grid ? w.tables + T_GRID : 0 };
}

type Input = { kind: "float32"; data: Float32Array } | { kind: "float16" | "bfloat16"; data: Uint16Array };

function quantizeAny(input: Input, opts: Quantize4bitOptions): QuantState4bit {
  const name = opts.name ?? "tensor";
  const type = opts.type ?? "nf4";
  check(type === "nf4" || type === "fp4", "QUANT_BAD_TYPE", `${name}: quantization type ${type} must be "nf4" or "fp4"`);
  const blocksize = opts.blocksize ?? 64;
  checkBlocksize(blocksize, name);
  const n = input.data.length;
  const shape = opts.shape ?? [n];
  check(shape.reduce((a, b) => a * b, 1) === n, "QUANT_BAD_SHAPE", `${name}: shape [${shape}] does not hold ${n} values`);

  const w = QuantWasm.get();
  w.ensure(w.data + D_END);
  const code = codeTable(type);
  const { nMids, grid } = writeTables4(w, type, code);
  const bz = bucketizer(type);
  const nBlocks = Math.ceil(n / blocksize);
  const into = opts.into;
  if (into) {
    check(into.packed.length === Math.ceil(n / 2), "QUANT_BAD_SHAPE", `${name}: into.packed holds ${into.packed.length} bytes, ${Math.ceil(n / 2)} needed`);
    check(into.absmax.length === nBlocks, "QUANT_BAD_SHAPE", `${name}: into.absmax holds ${into.absmax.length} values, ${nBlocks} blocks needed`);
  }
  const packed = into?.packed ?? new Uint8Array(Math.ceil(n / 2));
  const absmax = into?.absmax ?? new Float32Array(nBlocks);
  for (let start = 0; start < n; start += CHUNK) {
    const len = Math.min(CHUNK, n - start);
    const src = w.data + D_IN;
    if (input.kind === "float32") {
      w.f32(src, len).set(input.data.subarray(start, start + len));
    } else {
      new Uint16Array(w.x.memory.buffer, w.data + D_IN16, len).set(input.data.subarray(start, start + len));
      (input.kind === "float16" ? w.x.widenF16 : w.x.widenBF16)(w.data + D_IN16, len, src);
    }
    const bad = w.x.quantize4(src, len, blocksize, w.tables + T_MIDS4, nMids, w.tables + T_RANK, bz.signMagnitude ? 1 : 0, w.data + D_PACKED, w.data + D_ABSMAX, grid);
    if (bad >= 0) throw nonFinite(name, w.f32(src, len), bad * blocksize, start);
    packed.set(w.u8(w.data + D_PACKED, Math.ceil(len / 2)), start / 2);
    absmax.set(w.f32(w.data + D_ABSMAX, Math.ceil(len / blocksize)), start / blocksize);
  }
  const state: QuantState4bit = { type, blocksize, n, shape: [...shape], dtype: input.kind, packed, code, absmax, nested: null };
  if (opts.doubleQuant) {
    state.nested = quantizeAbsmax(absmax);
    state.absmax = null;
  }
  return state;
}

function nonFinite(name: string, chunk: Float32Array, from: number, chunkStart: number): PeftError {
  let i = from;
  while (i < chunk.length && Number.isFinite(chunk[i])) i++;
  return new PeftError("QUANT_NONFINITE", `${name}: element ${chunkStart + i} is ${chunk[i]}; weights must be finite to quantize`);
}

/** Quantizes f32 values (see QuantState4bit). */
export function quantize4bit(data: Float32Array, opts: Quantize4bitOptions = {}): QuantState4bit {
  return quantizeAny({ kind: "float32", data }, opts);
}
/** Quantizes IEEE half values given as their 16-bit patterns. */
export function quantize4bitF16(data: Uint16Array, opts: Quantize4bitOptions = {}): QuantState4bit {
  return quantizeAny({ kind: "float16", data }, opts);
}
/** Quantizes bfloat16 values given as their 16-bit patterns. */
export function quantize4bitBF16(data: Uint16Array, opts: Quantize4bitOptions = {}): QuantState4bit {
  return quantizeAny({ kind: "bfloat16", data }, opts);
}

/**
 * Double quantization of f32 absmax constants (bnb quantize_4bit with compress_statistics).
 * `offset` defaults to the mean (f64 sum, rounded once); pass one to reproduce a given state.
 */
export function quantizeAbsmax(absmax: Float32Array, map: Float32Array = DYNAMIC_MAP, offset?: number): NestedAbsmax {
  if (offset === undefined) {
    let sum = 0;
    for (let i = 0; i < absmax.length; i++) sum += absmax[i];
    offset = absmax.length ? Math.fround(sum / absmax.length) : 0;
  }
  const w = QuantWasm.get();
  w.ensure(w.data + D_END);
  const mids = map === DYNAMIC_MAP ? DYNAMIC_MIDS : midpointsOf(map);
  w.f32(w.tables + T_DMIDS, 255).set(mids);
  const n = absmax.length;
  const codes = new Uint8Array(n);
  const nested = new Float32Array(Math.ceil(n / NESTED_BLOCKSIZE));
  for (let start = 0; start < n; start += CHUNK) {
    const len = Math.min(CHUNK, n - start);
    const src = w.f32(w.data + D_IN, len);
    for (let i = 0; i < len; i++) src[i] = absmax[start + i] - offset; // f32 store rounds once
    const bad = w.x.quantize8(w.data + D_IN, len, NESTED_BLOCKSIZE, w.tables + T_DMIDS, w.data + D_IN16, w.data + D_ABSMAX);
    if (bad >= 0) throw new PeftError("QUANT_NONFINITE", `absmax block ${start / NESTED_BLOCKSIZE + bad} is not finite`);
    codes.set(w.u8(w.data + D_IN16, len), start);
    nested.set(w.f32(w.data + D_ABSMAX, Math.ceil(len / NESTED_BLOCKSIZE)), start / NESTED_BLOCKSIZE);
  }
  return { codes, absmax: nested, offset, blocksize: NESTED_BLOCKSIZE, map };
}

function midpointsOf(map: Float32Array): Float32Array {
  const out = new Float32Array(map.length - 1);
  for (let i = 0; i + 1 < map.length; i++) out[i] = (map[i] + map[i + 1]) / 2;
  return out;
}

/** The f32 absmax per 4-bit block (dequantizing the nested constants when double-quantized). */
export function blockAbsmax(state: QuantState4bit): Float32Array {
  if (state.absmax) return state.absmax;
  const nq = state.nested;
  if (!nq) throw new PeftError("QUANT_STATE", "quant state has neither absmax nor nested absmax");
  const n = nq.codes.length;
  const out = new Float32Array(n);
  const w = QuantWasm.get();
  w.ensure(w.data + D_END);
  w.f32(w.tables + T_DMAP, 256).set(nq.map);
  for (let start = 0; start < n; start += CHUNK) {
    const len = Math.min(CHUNK, n - start);
    w.u8(w.data + D_IN16, len).set(nq.codes.subarray(start, start + len));
    const nb = Math.ceil(len / nq.blocksize);
    w.f32(w.data + D_ABSMAX, nb).set(nq.absmax.subarray(start / nq.blocksize, start / nq.blocksize + nb));
    w.x.dequantize8(w.data + D_IN16, len, nq.blocksize, w.tables + T_DMAP, w.data + D_ABSMAX, nq.offset, w.data + D_IN);
    out.set(w.f32(w.data + D_IN, len), start);
  }
  return out;
}

/** Dequantizes to f32: code[q] * absmax (bnb dequantize_4bit, bit-identical for f32 output). */
export function dequantize4bit(state: QuantState4bit, out = new Float32Array(state.n)): Float32Array {
  const { n, blocksize } = state;
  const absmax = blockAbsmax(state);
  const w = QuantWasm.get();
  w.ensure(w.data + D_END);
  writeTables4(w, state.type, state.code);
  for (let start = 0; start < n; start += CHUNK) {
    const len = Math.min(CHUNK, n - start);
    const nb = Math.ceil(len / blocksize);
    w.u8(w.data + D_PACKED, Math.ceil(len / 2)).set(state.packed.subarray(start / 2, start / 2 + Math.ceil(len / 2)));
    w.f32(w.data + D_ABSMAX, nb).set(absmax.subarray(start / blocksize, start / blocksize + nb));
    w.x.dequantize4(w.data + D_PACKED, len, blocksize, w.tables + T_CODE, w.tables + T_PLANES, w.data + D_ABSMAX, w.data + D_IN);
    out.set(w.f32(w.data + D_IN, len), start);
  }
  return out;
}
