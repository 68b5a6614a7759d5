/**
 * Plain TypeScript 4-bit quantizer and dequantizer: the same rules as the WASM module, written
 * the obvious scalar way. Used as a cross-check in tests and as the peer in bench/quant.ts.
 * (Single precision throughout via Math.fround, so results are bit-identical to the WASM.)
 */
import { bucketizer, codeTable, type QuantType4 } from "./tables.ts";

export function quantize4bitReference(data: Float32Array, type: QuantType4, blocksize: number): { packed: Uint8Array; absmax: Float32Array } {
  const f = Math.fround;
  const { mids, rankToCode, signMagnitude } = bucketizer(type);
  const n = data.length;
  const packed = new Uint8Array(Math.ceil(n / 2));
  const absmax = new Float32Array(Math.ceil(n / blocksize));
  for (let b = 0; b < absmax.length; b++) {
    const start = b * blocksize, end = Math.min(n, start + blocksize);
    let m = 0;
    for (let i = start; i < end; i++) m = Math.max(m, Math.abs(data[i]));
    absmax[b] = m;
    if (m === 0) continue; // codes stay 0 (bnb's NaN path)
    const r = f(1 / m);
    for (let i = start; i < end; i++) {
      let s = Math.min(1, Math.max(-1, f(data[i] * r)));
      let sign = 0;
      if (signMagnitude) {
        if (s < 0) sign = 8;
        s = Math.abs(s);
      }
      let rank = 0;
      while (rank < mids.length && s > mids[rank]) rank++;
      const code = rankToCode[rank] | sign;
      packed[i >> 1] |= (i & 1) === 0 ? code << 4 : code;
    }
  }
  return { packed, absmax };
}

export function dequantize4bitReference(packed: Uint8Array, absmax: Float32Array, n: number, type: QuantType4, blocksize: number): Float32Array {
  const code = codeTable(type);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const byte = packed[i >> 1];
    out[i] = code[(i & 1) === 0 ? byte >> 4 : byte & 15] * absmax[Math.floor(i / blocksize)];
  }
  return out;
}
