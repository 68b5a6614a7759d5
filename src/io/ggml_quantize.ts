/**
 * Quantizers to ggml block formats (layouts in ggml_quants.ts), following ggml-quants.c's
 * reference quantizers `quantize_row_*_ref` step by step: the same scale searches
 * (make_qkx2_quants for Q4_K / Q5_K, make_qx_quants for Q6_K), the same f32 arithmetic in the
 * same order (every operation rounded to f32 with Math.fround), f16 rounding to nearest even,
 * and ggml's rounding helpers (nearest_int: round half to even; roundf: half away from zero;
 * (int8_t) casts: truncation). Nothing is simplified: tests/io/ggml_quants_llamacpp.test.ts
 * compares our bytes with llama.cpp's own quantize_row_*_ref (its shipped libggml-base) bit for bit.
 *
 * BF16 rounds to nearest even as ggml_fp32_to_bf16_row_ref does.
 *
 * llama-quantize without an importance matrix runs exactly these (ggml_quantize_chunk with no
 * imatrix calls quantize_row_*_ref), so our bytes are its bytes. With --imatrix it runs the
 * `_impl` variants weighted by the matrix, which are not ported here.
 */
import { PeftError } from "../errors.ts";
import { f16ToF32, f32ToF16 } from "./bytes.ts";
import { GGML, type GgmlTypeTraits, ggmlTraits, scaleMinK4 } from "./ggml_quants.ts";

const fr = Math.fround;
const FLT_MAX = 3.4028234663852886e38;
const GROUP_MAX_EPS = fr(1e-15);
const TENTH = fr(0.1);

/** ggml's nearest_int: f32 round half to even (via the 1.5·2^23 trick). */
function nearestInt(v: number): number {
  return fr(v + 12582912) - 12582912;
}
/** C roundf: half away from zero. */
function roundAway(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}
const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, v));

type Quantizer = (x: Float32Array, xo: number, b: Uint8Array, v: DataView, o: number) => void;

/** Largest |x| and the signed value that has it, first occurrence (Q4_0, Q5_0). */
function signedAbsMax(x: Float32Array, xo: number, n: number): number {
  let amax = 0, max = 0;
  for (let j = 0; j < n; j++) {
    const a = Math.abs(x[xo + j]);
    if (amax < a) (amax = a), (max = x[xo + j]);
  }
  return max;
}

function minMax(x: Float32Array, xo: number, n: number): [number, number] {
  let min = FLT_MAX, max = -FLT_MAX;
  for (let j = 0; j < n; j++) {
    if (x[xo + j] < min) min = x[xo + j];
    if (x[xo + j] > max) max = x[xo + j];
  }
  return [min, max];
}

/** Q4_0 / Q5_0: d = max / -2^(bits-1), q = min(2^bits - 1, trunc(x/d + 2^(bits-1) + 0.5)). */
function symmetric(bits: 4 | 5): Quantizer {
  const half = 1 << (bits - 1), top = (1 << bits) - 1, qs = bits === 4 ? 2 : 6, offset = half + 0.5;
  return (x, xo, b, v, o) => {
    const d = fr(signedAbsMax(x, xo, 32) / -half);
    const id = d ? fr(1 / d) : 0;
    v.setUint16(o, f32ToF16(d), true);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(top, Math.trunc(fr(fr(x[xo + j] * id) + offset)));
      const q1 = Math.min(top, Math.trunc(fr(fr(x[xo + j + 16] * id) + offset)));
      b[o + qs + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
      qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
    }
    if (bits === 5) v.setUint32(o + 2, qh >>> 0, true);
  };
}

/** Q4_1 / Q5_1: d = (max - min) / (2^bits - 1), m = min, q = trunc((x - min)/d + 0.5). */
function affine(bits: 4 | 5): Quantizer {
  const top = (1 << bits) - 1, qs = bits === 4 ? 4 : 8;
  return (x, xo, b, v, o) => {
    const [min, max] = minMax(x, xo, 32);
    const d = fr(fr(max - min) / top);
    const id = d ? fr(1 / d) : 0;
    v.setUint16(o, f32ToF16(d), true);
    v.setUint16(o + 2, f32ToF16(min), true);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      // Q4_1 clamps to 15; Q5_1 does not need to (ggml casts to uint8)
      const q0 = Math.trunc(fr(fr(fr(x[xo + j] - min) * id) + 0.5));
      const q1 = Math.trunc(fr(fr(fr(x[xo + j + 16] - min) * id) + 0.5));
      const [a, c] = bits === 4 ? [Math.min(15, q0), Math.min(15, q1)] : [q0 & 255, q1 & 255];
      b[o + qs + j] = (a & 0xf) | ((c & 0xf) << 4);
      qh |= ((a >> 4 & 1) << j) | ((c >> 4 & 1) << (j + 16));
    }
    if (bits === 5) v.setUint32(o + 4, qh >>> 0, true);
  };
}

const quantQ8_0: Quantizer = (x, xo, _b, v, o) => {
  let amax = 0;
  for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[xo + j]));
  const d = fr(amax / 127);
  const id = d ? fr(1 / d) : 0;
  v.setUint16(o, f32ToF16(d), true);
  for (let j = 0; j < 32; j++) v.setInt8(o + 2 + j, roundAway(fr(x[xo + j] * id)));
};

/**
 * ggml's make_qkx2_quants: levels L[i] in [0, nmax] and (scale, min) for x ≈ scale·L - min,
 * min >= 0, minimising the weighted squared error: a first guess from the range, then nstep+1
 * trial scales (rmin + rdelta·is + nmax)/(max - min), each refitted by weighted least squares.
 */
function makeQkx2(
  n: number, nmax: number, x: Float32Array, xo: number, w: Float32Array, L: Uint8Array, lo: number,
  aux: Uint8Array, rmin: number, rdelta: number, nstep: number,
): [scale: number, min: number] {
  let min = x[xo], max = x[xo], sumW = w[0], sumX = fr(w[0] * x[xo]);
  for (let i = 1; i < n; i++) {
    if (x[xo + i] < min) min = x[xo + i];
    if (x[xo + i] > max) max = x[xo + i];
    sumW = fr(sumW + w[i]);
    sumX = fr(sumX + fr(w[i] * x[xo + i]));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lo, lo + n);
    return [0, -min];
  }
  let iscale = fr(nmax / fr(max - min));
  let scale = fr(1 / iscale);
  let best = 0;
  for (let i = 0; i < n; i++) {
    const l = clamp(nearestInt(fr(iscale * fr(x[xo + i] - min))), 0, nmax);
    L[lo + i] = l;
    const diff = fr(fr(fr(scale * l) + min) - x[xo + i]);
    best = fr(best + fr(w[i] * fr(diff * diff)));
  }
  for (let is = 0; is <= nstep; is++) {
    // min is the best fit's so far (ggml updates it in the loop)
    iscale = fr(fr(fr(rmin + fr(rdelta * is)) + nmax) / fr(max - min));
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = clamp(nearestInt(fr(iscale * fr(x[xo + i] - min))), 0, nmax);
      aux[i] = l;
      const wl = fr(w[i] * l);
      sumL = fr(sumL + wl);
      sumL2 = fr(sumL2 + fr(wl * l));
      sumXL = fr(sumXL + fr(wl * x[xo + i]));
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL));
    if (!(D > 0)) continue;
    let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D);
    let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D);
    if (thisMin > 0) (thisMin = 0), (thisScale = fr(sumXL / sumL2));
    let cur = 0;
    for (let i = 0; i < n; i++) {
      const diff = fr(fr(fr(thisScale * aux[i]) + thisMin) - x[xo + i]);
      cur = fr(cur + fr(w[i] * fr(diff * diff)));
    }
    if (cur < best) {
      L.set(aux.subarray(0, n), lo);
      best = cur;
      scale = thisScale;
      min = thisMin;
    }
  }
  return [scale, -min];
}

/**
 * Q4_K / Q5_K (quantize_row_q4_K_ref / q5_K_ref): per 32-element sub-block a make_qkx2_quants fit
 * weighted by rms(x) + |x|; the 8 scales and 8 mins quantized to 6 bits against the block's
 * largest (d = max_scale/63, dmin = max_min/63); then every element re-quantized against the
 * 6-bit-rounded scales it will be decoded with.
 */
function kQuant(bits: 4 | 5): Quantizer {
  const nmax = (1 << bits) - 1, rmin = bits === 4 ? -1 : -0.5, nstep = bits === 4 ? 20 : 15, qs = bits === 4 ? 16 : 48;
  const L = new Uint8Array(256), aux = new Uint8Array(32), w = new Float32Array(32);
  const scales = new Float32Array(8), mins = new Float32Array(8);
  return (x, xo, b, v, o) => {
    let maxScale = 0, maxMin = 0;
    for (let j = 0; j < 8; j++) {
      const s = xo + 32 * j;
      let sumX2 = 0;
      for (let l = 0; l < 32; l++) sumX2 = fr(sumX2 + fr(x[s + l] * x[s + l]));
      const avX = fr(Math.sqrt(fr(sumX2 / 32)));
      for (let l = 0; l < 32; l++) w[l] = fr(avX + Math.abs(x[s + l]));
      [scales[j], mins[j]] = makeQkx2(32, nmax, x, s, w, L, 32 * j, aux, rmin, TENTH, nstep);
      if (scales[j] > maxScale) maxScale = scales[j];
      if (mins[j] > maxMin) maxMin = mins[j];
    }
    const invScale = maxScale > 0 ? fr(63 / maxScale) : 0;
    const invMin = maxMin > 0 ? fr(63 / maxMin) : 0;
    const sc = o + 4;
    for (let j = 0; j < 8; j++) {
      const ls = Math.min(63, nearestInt(fr(invScale * scales[j])) & 255);
      const lm = Math.min(63, nearestInt(fr(invMin * mins[j])) & 255);
      if (j < 4) {
        b[sc + j] = ls;
        b[sc + j + 4] = lm;
      } else {
        b[sc + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
        b[sc + j - 4] |= (ls >> 4) << 6;
        b[sc + j] |= (lm >> 4) << 6;
      }
    }
    const dBits = f32ToF16(fr(maxScale / 63)), mBits = f32ToF16(fr(maxMin / 63));
    v.setUint16(o, dBits, true);
    v.setUint16(o + 2, mBits, true);
    for (let j = 0; j < 8; j++) {
      const [s, m] = scaleMinK4(b, sc, j);
      const d = fr(f16ToF32(dBits) * s);
      if (!d) continue; // keeps the fit's levels
      const dm = fr(f16ToF32(mBits) * m);
      for (let i = 0; i < 32; i++) L[32 * j + i] = clamp(nearestInt(fr(fr(x[xo + 32 * j + i] + dm) / d)), 0, nmax);
    }
    if (bits === 5) b.fill(0, o + 16, o + 48);
    for (let c = 0; c < 4; c++) {
      for (let l = 0; l < 32; l++) {
        let l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
        if (l1 > 15) (l1 -= 16), (b[o + 16 + l] |= 1 << (2 * c));
        if (l2 > 15) (l2 -= 16), (b[o + 16 + l] |= 2 << (2 * c));
        b[o + qs + 32 * c + l] = l1 | (l2 << 4);
      }
    }
  };
}

/**
 * ggml's make_qx_quants with rmse_type 1 and no importance weights: signed levels L - nmax in
 * [-nmax, nmax - 1] and the scale maximising sum(w·x·l)²/sum(w·l²) with w = x² over 19 trial
 * scales -(nmax + 0.1·is)/max.
 */
function makeQx(n: number, nmax: number, x: Float32Array, xo: number, L: Uint8Array, lo: number): number {
  let amax = 0, max = 0;
  for (let i = 0; i < n; i++) {
    const a = Math.abs(x[xo + i]);
    if (a > amax) (amax = a), (max = x[xo + i]);
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  const fit = (iscale: number, store: boolean): [number, number] => {
    let sumLX = 0, sumL2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i];
      const l = clamp(nearestInt(fr(iscale * xi)), -nmax, nmax - 1);
      if (store) L[lo + i] = l + nmax;
      const w = fr(xi * xi);
      sumLX = fr(sumLX + fr(fr(w * xi) * l));
      sumL2 = fr(sumL2 + fr(fr(w * l) * l));
    }
    return [sumLX, sumL2];
  };
  let [sumLX, sumL2] = fit(fr(-nmax / max), true);
  let scale = sumL2 ? fr(sumLX / sumL2) : 0;
  let best = fr(scale * sumLX);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    const iscale = fr(-fr(nmax + fr(TENTH * is)) / max);
    [sumLX, sumL2] = fit(iscale, false);
    if (sumL2 > 0 && fr(sumLX * sumLX) > fr(best * sumL2)) {
      fit(iscale, true);
      scale = fr(sumLX / sumL2);
      best = fr(scale * sumLX);
    }
  }
  return scale;
}

/**
 * Q6_K (quantize_row_q6_K_ref): per 16-element sub-block a make_qx_quants fit; the 16 scales
 * quantized to int8 against the largest (d = -max_scale/128); elements re-quantized against them.
 */
function q6K(): Quantizer {
  const L = new Uint8Array(256), scales = new Float32Array(16);
  return (x, xo, b, v, o) => {
    let maxScale = 0, maxAbs = 0;
    for (let ib = 0; ib < 16; ib++) {
      scales[ib] = makeQx(16, 32, x, xo + 16 * ib, L, 16 * ib);
      if (Math.abs(scales[ib]) > maxAbs) (maxAbs = Math.abs(scales[ib])), (maxScale = scales[ib]);
    }
    if (maxAbs < GROUP_MAX_EPS) {
      b.fill(0, o, o + 210);
      return;
    }
    const iscale = fr(-128 / maxScale);
    const dBits = f32ToF16(fr(1 / iscale));
    v.setUint16(o + 208, dBits, true);
    for (let ib = 0; ib < 16; ib++) v.setInt8(o + 192 + ib, Math.min(127, nearestInt(fr(iscale * scales[ib]))));
    for (let j = 0; j < 16; j++) {
      const d = fr(f16ToF32(dBits) * v.getInt8(o + 192 + j));
      if (!d) continue;
      for (let i = 0; i < 16; i++) L[16 * j + i] = clamp(nearestInt(fr(x[xo + 16 * j + i] / d)), -32, 31) + 32;
    }
    for (let h = 0; h < 2; h++) {
      for (let l = 0; l < 32; l++) {
        const e = 128 * h + l;
        const [q1, q2, q3, q4] = [L[e], L[e + 32], L[e + 64], L[e + 96]];
        b[o + 64 * h + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
        b[o + 64 * h + l + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
        b[o + 128 + 32 * h + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
    }
  };
}

const f32Bits = new Uint32Array(1);
const f32Value = new Float32Array(f32Bits.buffer);
/** BF16 (ggml_fp32_to_bf16_row_ref): the f32's top half, rounded to nearest even. */
const quantBF16: Quantizer = (x, xo, _b, v, o) => {
  f32Value[0] = x[xo];
  const u = f32Bits[0];
  v.setUint16(o, (u + 0x7fff + ((u >>> 16) & 1)) >>> 16, true);
};

const QUANTIZERS: Record<number, () => Quantizer> = {
  [GGML.Q4_0]: () => symmetric(4), [GGML.Q5_0]: () => symmetric(5),
  [GGML.Q4_1]: () => affine(4), [GGML.Q5_1]: () => affine(5),
  [GGML.Q8_0]: () => quantQ8_0, [GGML.Q4_K]: () => kQuant(4), [GGML.Q5_K]: () => kQuant(5), [GGML.Q6_K]: q6K,
  [GGML.BF16]: () => quantBF16,
};

/** The types quantizeGgml writes. */
export const GGML_QUANTIZABLE: readonly number[] = Object.keys(QUANTIZERS).map(Number);

/**
 * Quantizes `x` (rows of `rowLength`, row-major) to ggml `type` blocks, as llama.cpp's reference
 * quantizer does. Rows must hold whole blocks (32 or 256 elements) and values must be finite;
 * `what` names the tensor in errors.
 */
export function quantizeGgml(type: number, x: Float32Array, rowLength: number, what = "tensor"): Uint8Array {
  const t: GgmlTypeTraits = ggmlTraits(type, what);
  const make = QUANTIZERS[type];
  if (!make) {
    const names = GGML_QUANTIZABLE.map((id) => ggmlTraits(id, what).name).join(", ");
    throw new PeftError("QUANT_UNSUPPORTED", `${what}: cannot quantize to ${t.name} (supported: ${names})`);
  }
  if (!Number.isInteger(rowLength) || rowLength <= 0 || rowLength % t.blockSize !== 0 || x.length % rowLength !== 0) {
    throw new PeftError(
      "QUANT_BAD_SHAPE",
      `${what}: ${t.name} needs rows that are multiples of ${t.blockSize} elements; got ${x.length} values in rows of ${rowLength}`,
    );
  }
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) throw new PeftError("QUANT_BAD_VALUE", `${what}: value #${i} is ${x[i]}; ${t.name} needs finite values`);
  }
  const blocks = x.length / t.blockSize;
  const out = new Uint8Array(blocks * t.typeSize);
  const view = new DataView(out.buffer);
  const quantize = make();
  for (let i = 0; i < blocks; i++) quantize(x, i * t.blockSize, out, view, i * t.typeSize);
  return out;
}
