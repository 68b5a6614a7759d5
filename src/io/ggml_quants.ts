/**
 * ggml tensor types: the one table of type ids, block sizes and bytes per block (ggml.h
 * `enum ggml_type`, ggml.c `type_traits`), and exact CPU dequantizers for the types we run,
 * ported from the semantics of ggml-quants.c `dequantize_row_*` (the code is ours).
 * Quantizers are in ggml_quantize.ts.
 *
 * Block layouts (little-endian; f16 = IEEE half; offsets in bytes):
 *   Q4_0  32 el, 18 B: d f16 @0, qs[16] @2        x[j] = (lo(qs[j]) - 8)·d, x[j+16] = (hi(qs[j]) - 8)·d
 *   Q4_1  32 el, 20 B: d @0, m @2, qs[16] @4      x[j] = lo(qs[j])·d + m,   x[j+16] = hi(qs[j])·d + m
 *   Q5_0  32 el, 22 B: d @0, qh u32 @2, qs[16] @6 as Q4_0 with bit e of qh as the 5th bit of element e, minus 16
 *   Q5_1  32 el, 24 B: d @0, m @2, qh @4, qs @8   as Q4_1 with the 5th bit from qh
 *   Q8_0  32 el, 34 B: d @0, qs i8[32] @2         x[j] = qs[j]·d
 *   Q4_K 256 el, 144 B: d @0, dmin @2, scales[12] @4 (8 six-bit scale/min pairs, get_scale_min_k4),
 *         qs[128] @16: 4 chunks of 64 elements, chunk c = low nibbles of qs[32c..32c+31] (sub-block 2c)
 *         then their high nibbles (sub-block 2c+1);  x = (d·sc)·q - dmin·m
 *   Q5_K 256 el, 176 B: as Q4_K with qh[32] @16 and qs[128] @48; element l of sub-block s takes
 *         bit s of qh[l] as its 5th bit
 *   Q6_K 256 el, 210 B: ql[128] @0, qh[64] @128, scales i8[16] @192, d @208; two halves of 128, each
 *         4 quarters of 32: quarter q, lane l uses nibble (q >= 2 ? hi : lo) of ql[64h + 32(q&1) + l]
 *         and bits 2q..2q+1 of qh[32h + l]; x[e] = (d·scales[e/16])·(q6 - 32)
 *   BF16 1 el, 2 B: the top half of an f32.
 * Every dequantized value is exactly representable in f32 (the products of small integers and an
 * f16-derived scale need at most 24 bits), so each rounds once, as ggml's float code does.
 */
import { PeftError } from "../errors.ts";
import { f16ToF32 } from "./bytes.ts";

/** ggml type ids (ggml.h). */
export const GGML = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q8_1: 9, Q2_K: 10, Q3_K: 11, Q4_K: 12,
  Q5_K: 13, Q6_K: 14, Q8_K: 15, I8: 24, I16: 25, I32: 26, I64: 27, F64: 28, BF16: 30,
} as const;

export interface GgmlTypeTraits {
  id: number;
  name: string;
  /** Elements per block (1 for plain types); a row's length must be a multiple of it. */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
  /** dequantizeGgml decodes it. */
  decodes: boolean;
}

function traits(name: keyof typeof GGML, blockSize: number, typeSize: number, decodes: boolean): GgmlTypeTraits {
  return { id: GGML[name], name, blockSize, typeSize, decodes };
}

/** Every type a GGUF tensor may have that we can size; `decodes` marks the ones we read. */
export const GGML_TYPES: ReadonlyMap<number, GgmlTypeTraits> = new Map([
  traits("F32", 1, 4, true), traits("F16", 1, 2, true), traits("BF16", 1, 2, true),
  traits("Q4_0", 32, 18, true), traits("Q4_1", 32, 20, true), traits("Q5_0", 32, 22, true),
  traits("Q5_1", 32, 24, true), traits("Q8_0", 32, 34, true), traits("Q8_1", 32, 36, false),
  traits("Q2_K", 256, 84, false), traits("Q3_K", 256, 110, false), traits("Q4_K", 256, 144, true),
  traits("Q5_K", 256, 176, true), traits("Q6_K", 256, 210, true), traits("Q8_K", 256, 292, false),
  traits("I8", 1, 1, false), traits("I16", 1, 2, false), traits("I32", 1, 4, false),
  traits("I64", 1, 8, false), traits("F64", 1, 8, false),
].map((t) => [t.id, t]));

const decodedNames = () => [...GGML_TYPES.values()].filter((t) => t.decodes).map((t) => t.name).join(", ");

/** The traits of a type id, or a PeftError naming `what` (a file and tensor) and the type. */
export function ggmlTraits(type: number, what: string, typeName = `type ${type}`): GgmlTypeTraits {
  const t = GGML_TYPES.get(type);
  if (!t) throw new PeftError("GGUF_UNSUPPORTED_TYPE", `${what}: unsupported tensor type ${typeName} (supported: ${decodedNames()})`);
  return t;
}

/**
 * Bytes of a tensor of `type` with PyTorch-order `shape` (rows = the last dimension). A row
 * must hold whole blocks, as ggml requires: other lengths are refused naming `what`.
 */
export function ggmlTensorBytes(type: number, shape: readonly number[], what: string, typeName?: string): number {
  const t = ggmlTraits(type, what, typeName);
  const row = shape.length ? shape[shape.length - 1] : 1;
  if (row % t.blockSize !== 0) {
    throw new PeftError("GGUF_BAD_TENSOR", `${what}: rows of ${row} elements are not a multiple of ${t.name}'s block of ${t.blockSize}`);
  }
  const n = shape.reduce((a, b) => a * b, 1);
  return (n / t.blockSize) * t.typeSize;
}

type Dequantizer = (b: Uint8Array, v: DataView, o: number, y: Float32Array, e: number) => void;
const fr = Math.fround;
const half = (v: DataView, o: number) => f16ToF32(v.getUint16(o, true));

/** 6-bit scale and min of sub-block j from the 12 packed bytes at s (ggml's get_scale_min_k4). */
export function scaleMinK4(b: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [b[s + j] & 63, b[s + j + 4] & 63];
  return [(b[s + j + 4] & 0xf) | ((b[s + j - 4] >> 6) << 4), (b[s + j + 4] >> 4) | ((b[s + j] >> 6) << 4)];
}

/** One block at byte o into y[e ..]. Float32Array stores round like ggml's float assignments. */
const DEQUANT: Record<number, Dequantizer> = {
  [GGML.Q4_0](b, v, o, y, e) {
    const d = half(v, o);
    for (let j = 0; j < 16; j++) {
      y[e + j] = ((b[o + 2 + j] & 0xf) - 8) * d;
      y[e + j + 16] = ((b[o + 2 + j] >> 4) - 8) * d;
    }
  },
  [GGML.Q4_1](b, v, o, y, e) {
    const d = half(v, o), m = half(v, o + 2);
    for (let j = 0; j < 16; j++) {
      y[e + j] = fr((b[o + 4 + j] & 0xf) * d) + m;
      y[e + j + 16] = fr((b[o + 4 + j] >> 4) * d) + m;
    }
  },
  [GGML.Q5_0](b, v, o, y, e) {
    const d = half(v, o), qh = v.getUint32(o + 2, true);
    for (let j = 0; j < 16; j++) {
      y[e + j] = (((b[o + 6 + j] & 0xf) | (((qh >>> j) & 1) << 4)) - 16) * d;
      y[e + j + 16] = (((b[o + 6 + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16) * d;
    }
  },
  [GGML.Q5_1](b, v, o, y, e) {
    const d = half(v, o), m = half(v, o + 2), qh = v.getUint32(o + 4, true);
    for (let j = 0; j < 16; j++) {
      y[e + j] = fr(((b[o + 8 + j] & 0xf) | (((qh >>> j) & 1) << 4)) * d) + m;
      y[e + j + 16] = fr(((b[o + 8 + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4)) * d) + m;
    }
  },
  [GGML.Q8_0](_b, v, o, y, e) {
    const d = half(v, o);
    for (let j = 0; j < 32; j++) y[e + j] = v.getInt8(o + 2 + j) * d;
  },
  [GGML.Q4_K](b, v, o, y, e) {
    const d = half(v, o), dmin = half(v, o + 2);
    for (let c = 0; c < 4; c++) {
      const [s1, m1] = scaleMinK4(b, o + 4, 2 * c), [s2, m2] = scaleMinK4(b, o + 4, 2 * c + 1);
      const d1 = fr(d * s1), n1 = fr(dmin * m1), d2 = fr(d * s2), n2 = fr(dmin * m2);
      const q = o + 16 + 32 * c;
      for (let l = 0; l < 32; l++) {
        y[e + 64 * c + l] = d1 * (b[q + l] & 0xf) - n1;
        y[e + 64 * c + 32 + l] = d2 * (b[q + l] >> 4) - n2;
      }
    }
  },
  [GGML.Q5_K](b, v, o, y, e) {
    const d = half(v, o), dmin = half(v, o + 2);
    for (let c = 0; c < 4; c++) {
      const [s1, m1] = scaleMinK4(b, o + 4, 2 * c), [s2, m2] = scaleMinK4(b, o + 4, 2 * c + 1);
      const d1 = fr(d * s1), n1 = fr(dmin * m1), d2 = fr(d * s2), n2 = fr(dmin * m2);
      const q = o + 48 + 32 * c;
      for (let l = 0; l < 32; l++) {
        const h = b[o + 16 + l];
        y[e + 64 * c + l] = d1 * ((b[q + l] & 0xf) + ((h >> (2 * c)) & 1) * 16) - n1;
        y[e + 64 * c + 32 + l] = d2 * ((b[q + l] >> 4) + ((h >> (2 * c + 1)) & 1) * 16) - n2;
      }
    }
  },
  [GGML.Q6_K](b, v, o, y, e) {
    const d = half(v, o + 208);
    for (let h = 0; h < 2; h++) {
      const ql = o + 64 * h, qh = o + 128 + 32 * h, sc = o + 192 + 8 * h, out = e + 128 * h;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4, hb = b[qh + l];
        const q1 = ((b[ql + l] & 0xf) | ((hb & 3) << 4)) - 32;
        const q2 = ((b[ql + l + 32] & 0xf) | (((hb >> 2) & 3) << 4)) - 32;
        const q3 = ((b[ql + l] >> 4) | (((hb >> 4) & 3) << 4)) - 32;
        const q4 = ((b[ql + l + 32] >> 4) | (((hb >> 6) & 3) << 4)) - 32;
        y[out + l] = fr(d * v.getInt8(sc + is)) * q1;
        y[out + l + 32] = fr(d * v.getInt8(sc + is + 2)) * q2;
        y[out + l + 64] = fr(d * v.getInt8(sc + is + 4)) * q3;
        y[out + l + 96] = fr(d * v.getInt8(sc + is + 6)) * q4;
      }
    }
  },
  [GGML.F32](_b, v, o, y, e) {
    y[e] = v.getFloat32(o, true);
  },
  [GGML.F16](_b, v, o, y, e) {
    y[e] = half(v, o);
  },
  [GGML.BF16](_b, v, o, y, e) {
    y[e] = bf16ToF32(v.getUint16(o, true));
  },
};

/** Byte offsets of the f16 scale fields in one block of each block-quantized type (layouts above). */
export const GGML_HALF_FIELDS: Readonly<Record<number, readonly number[]>> = {
  [GGML.Q4_0]: [0], [GGML.Q4_1]: [0, 2], [GGML.Q5_0]: [0], [GGML.Q5_1]: [0, 2], [GGML.Q8_0]: [0],
  [GGML.Q4_K]: [0, 2], [GGML.Q5_K]: [0, 2], [GGML.Q6_K]: [208],
};

/**
 * The index of the first non-finite value `bytes` (whole blocks of `type`) decode to, or -1,
 * without decoding them all: a block-quantized value is a small integer times finite f16 scales
 * (plus a finite f16 minimum), so it is finite exactly when its block's scales are; only a block
 * with a non-finite scale is decoded, to find the element. BF16 and F16 are checked value by value.
 */
export function ggmlFirstNonFinite(type: number, bytes: Uint8Array, what = "tensor"): number {
  const t = ggmlTraits(type, what);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const blocks = Math.floor(bytes.byteLength / t.typeSize);
  if (type === GGML.BF16 || type === GGML.F16) {
    const exp = type === GGML.BF16 ? 0x7f80 : 0x7c00;
    for (let i = 0; i < blocks; i++) if ((view.getUint16(2 * i, true) & exp) === exp) return i;
    return -1;
  }
  if (type === GGML.F32) {
    for (let i = 0; i < blocks; i++) if (!Number.isFinite(view.getFloat32(4 * i, true))) return i;
    return -1;
  }
  const fields = GGML_HALF_FIELDS[type];
  if (!fields) throw new PeftError("GGUF_UNSUPPORTED_TYPE", `${what}: cannot decode tensor type ${t.name} (supported: ${decodedNames()})`);
  for (let b = 0; b < blocks; b++) {
    const o = b * t.typeSize;
    if (fields.every((f) => (view.getUint16(o + f, true) & 0x7c00) !== 0x7c00)) continue;
    const values = dequantizeGgml(type, bytes.subarray(o, o + t.typeSize), t.blockSize, what);
    const i = values.findIndex((v) => !Number.isFinite(v));
    if (i >= 0) return b * t.blockSize + i;
  }
  return -1;
}

const bf16Bits = new Uint32Array(1);
const bf16Value = new Float32Array(bf16Bits.buffer);
function bf16ToF32(h: number): number {
  bf16Bits[0] = h << 16;
  return bf16Value[0];
}

/**
 * Decodes `n` elements of ggml `type` from `bytes` (whole blocks, as in a GGUF tensor) to f32.
 * `what` names the tensor in errors.
 */
export function dequantizeGgml(type: number, bytes: Uint8Array, n: number, what = "tensor"): Float32Array {
  const t = ggmlTraits(type, what);
  const decode = DEQUANT[type];
  if (!decode) throw new PeftError("GGUF_UNSUPPORTED_TYPE", `${what}: cannot decode tensor type ${t.name} (supported: ${decodedNames()})`);
  if (!Number.isInteger(n) || n < 0 || n % t.blockSize !== 0) {
    throw new PeftError("GGUF_BAD_TENSOR", `${what}: ${n} elements are not whole ${t.name} blocks of ${t.blockSize}`);
  }
  const blocks = n / t.blockSize;
  if (bytes.byteLength < blocks * t.typeSize) {
    throw new PeftError("GGUF_TRUNCATED", `${what}: ${n} ${t.name} elements need ${blocks * t.typeSize} bytes, got ${bytes.byteLength}`);
  }
  const y = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < blocks; i++) decode(bytes, view, i * t.typeSize, y, i * t.blockSize);
  return y;
}
