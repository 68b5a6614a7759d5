// NF4 / FP4 blockwise 4-bit quantization and 8-bit blockwise (double-quant) kernels,
// bit-exact with bitsandbytes (see src/quant/tables.ts for the rules and the tables).
//
// Memory: the TS wrapper (src/quant/wasm.ts) owns everything past heapBase(); it writes
// inputs and tables there and reads outputs back. No allocator runs in here.
//
// 4-bit code of a value x in a block with absmax a (a > 0):
//   s = clamp(x * (1/a), -1, 1)              (f32, one rounding each)
//   rank = #{ midpoints m_j : s > m_j }      (strict: a value on a midpoint takes the lower code)
//   code = rankToCode[rank]                  (identity for NF4)
// FP4 is sign-magnitude: rank counts magnitudes |s| > m_j and the sign adds 8 when s < 0.
// A block with absmax 0 gets code 0 everywhere (what bitsandbytes' NaN path produces).
// Packing: two codes per byte, even element in the high nibble.

export function heapBase(): usize {
  return __heap_base;
}

/**
 * Table lookup for indices known to be < 16. Relaxed SIMD's swizzle is one pshufb on x86;
 * the plain one adds a saturating fix-up for indices >= 16 that these lookups never need.
 * The relaxed build (wasm/quant/build.json variant) is picked at run time where it validates.
 */
// @ts-ignore: decorator
@inline
function lookupSmall(table: v128, idx: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i8x16.relaxed_swizzle(table, idx);
  return i8x16.swizzle(table, idx);
}

/**
 * Lanes 4q .. 4q+3 (q constant, 0..3) of 16 f32 table entries looked up as byte planes: b_k holds
 * byte k of each entry (one swizzle per plane), so the entries are the planes interleaved.
 */
// @ts-ignore: decorator
@inline
function planeLanes(b0: v128, b1: v128, b2: v128, b3: v128, q: i32): v128 {
  if (q < 2) {
    const t01 = i8x16.shuffle(b0, b1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const t23 = i8x16.shuffle(b2, b3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    return q == 0
      ? i8x16.shuffle(t01, t23, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23)
      : i8x16.shuffle(t01, t23, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
  }
  const t01 = i8x16.shuffle(b0, b1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const t23 = i8x16.shuffle(b2, b3, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  return q == 2
    ? i8x16.shuffle(t01, t23, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23)
    : i8x16.shuffle(t01, t23, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
}

// ---------------------------------------------------------------- input widening

/** f16 -> f32 for n values (exact). */
export function widenF16(src: usize, n: i32, dst: usize): void {
  for (let i = 0; i < n; i++) {
    const h = <u32>load<u16>(src + (<usize>i << 1));
    const sign = (h & 0x8000) << 16;
    let e = (h >> 10) & 0x1f;
    let m = h & 0x3ff;
    let bits: u32;
    if (e == 0x1f) {
      bits = sign | 0x7f800000 | (m << 13);
    } else if (e != 0) {
      bits = sign | ((e + 112) << 23) | (m << 13);
    } else if (m == 0) {
      bits = sign;
    } else {
      // subnormal: normalise
      let shift: u32 = 0;
      while ((m & 0x400) == 0) {
        m <<= 1;
        shift++;
      }
      m &= 0x3ff;
      bits = sign | ((113 - shift) << 23) | (m << 13);
    }
    store<u32>(dst + (<usize>i << 2), bits);
  }
}

/** bf16 -> f32 for n values (exact: the top 16 bits of an f32). */
export function widenBF16(src: usize, n: i32, dst: usize): void {
  for (let i = 0; i < n; i++) {
    store<u32>(dst + (<usize>i << 2), (<u32>load<u16>(src + (<usize>i << 1))) << 16);
  }
}

// ---------------------------------------------------------------- block absmax

/**
 * max |x| over n values; NaN propagates (comes out as a NaN, so callers' `amax <= MAX` fails).
 * SIMD part: |x| as i32 bits orders like the floats (NaNs above +inf), so an integer max with
 * four independent accumulators does it at one instruction a vector (f32x4.max is a long chain).
 */
function absmaxOf(p: usize, n: i32): f32 {
  let i = 0;
  let bits: u32 = 0;
  if (n >= 16) {
    const mask = i32x4.splat(0x7fffffff);
    let v0 = i32x4.splat(0), v1 = v0, v2 = v0, v3 = v0;
    for (; i + 16 <= n; i += 16) {
      const q = p + (<usize>i << 2);
      v0 = i32x4.max_u(v0, v128.and(v128.load(q), mask));
      v1 = i32x4.max_u(v1, v128.and(v128.load(q, 16), mask));
      v2 = i32x4.max_u(v2, v128.and(v128.load(q, 32), mask));
      v3 = i32x4.max_u(v3, v128.and(v128.load(q, 48), mask));
    }
    const v = i32x4.max_u(i32x4.max_u(v0, v1), i32x4.max_u(v2, v3));
    bits = max(max(i32x4.extract_lane(v, 0), i32x4.extract_lane(v, 1)), max(i32x4.extract_lane(v, 2), i32x4.extract_lane(v, 3)));
  }
  for (; i < n; i++) bits = max(bits, load<u32>(p + (<usize>i << 2)) & 0x7fffffff);
  return reinterpret<f32>(bits);
}

// ---------------------------------------------------------------- 4-bit quantize

/** Lane-wise max of |x| bits over len values (len a multiple of 16); four chains in flight. */
// @ts-ignore: decorator
@inline
function maxBitsVec(p: usize, len: i32): v128 {
  const mask = i32x4.splat(0x7fffffff);
  let v0 = i32x4.splat(0), v1 = v0, v2 = v0, v3 = v0;
  for (let i = 0; i < len; i += 16) {
    const q = p + (<usize>i << 2);
    v0 = i32x4.max_u(v0, v128.and(v128.load(q), mask));
    v1 = i32x4.max_u(v1, v128.and(v128.load(q, 16), mask));
    v2 = i32x4.max_u(v2, v128.and(v128.load(q, 32), mask));
    v3 = i32x4.max_u(v3, v128.and(v128.load(q, 48), mask));
  }
  return i32x4.max_u(i32x4.max_u(v0, v1), i32x4.max_u(v2, v3));
}

/**
 * absmax of every block (f32, at out). Four whole blocks at a time finish with one transposed
 * reduction instead of four lane-by-lane ones (the lane extracts cost as much as a 64-value block).
 * Returns -1, or the first block holding a NaN or an infinity.
 */
function absmaxBlocks(src: usize, n: i32, blocksize: i32, out: usize): i32 {
  const nBlocks = (n + blocksize - 1) / blocksize;
  const nFull = n / blocksize;
  let b = 0;
  const maxFinite = i32x4.splat(0x7f7fffff);
  for (; b + 4 <= nFull; b += 4) {
    const p = src + (<usize>(b * blocksize) << 2);
    const step = <usize>blocksize << 2;
    const a0 = maxBitsVec(p, blocksize);
    const a1 = maxBitsVec(p + step, blocksize);
    const a2 = maxBitsVec(p + 2 * step, blocksize);
    const a3 = maxBitsVec(p + 3 * step, blocksize);
    // [a0 lanes 0,1 | a1 lanes 0,1] vs [a0 lanes 2,3 | a1 lanes 2,3], then even vs odd lanes
    const m01 = i32x4.max_u(i8x16.shuffle(a0, a1, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), i8x16.shuffle(a0, a1, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
    const m23 = i32x4.max_u(i8x16.shuffle(a2, a3, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), i8x16.shuffle(a2, a3, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
    const v = i32x4.max_u(
      i8x16.shuffle(m01, m23, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27),
      i8x16.shuffle(m01, m23, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31),
    );
    v128.store(out + (<usize>b << 2), v);
    if (v128.any_true(i32x4.gt_u(v, maxFinite))) {
      for (let k = 0; k < 4; k++) if (!(load<f32>(out + (<usize>(b + k) << 2)) <= f32.MAX_VALUE)) return b + k;
    }
  }
  for (; b < nBlocks; b++) {
    const start = b * blocksize;
    const amax = absmaxOf(src + (<usize>start << 2), min(blocksize, n - start));
    if (!(amax <= f32.MAX_VALUE)) return b;
    store<f32>(out + (<usize>b << 2), amax);
  }
  return -1;
}



/** Scalar code of one scaled value (used for partial blocks and odd tails). */
function code4(s: f32, mids: usize, nMids: i32, rankToCode: usize, signMag: bool): u32 {
  let v = s;
  let sign: u32 = 0;
  if (signMag) {
    if (s < 0) sign = 8;
    v = abs<f32>(s);
  }
  let rank = 0;
  for (let j = 0; j < nMids; j++) {
    if (v > load<f32>(mids + (<usize>j << 2))) rank++;
  }
  return (<u32>load<u8>(rankToCode + <usize>rank)) | sign;
}

/** Codes of 4 scaled values as i32 lanes. */
// @ts-ignore: decorator
@inline
function codes4(s: v128, mids: usize, nMids: i32, table: v128, signMag: bool): v128 {
  let v = s;
  let sign = i32x4.splat(0);
  if (signMag) {
    sign = v128.and(f32x4.lt(s, f32x4.splat(0)), i32x4.splat(8));
    v = f32x4.abs(s);
  }
  let rank = i32x4.splat(0);
  for (let j = 0; j < nMids; j++) {
    // gt gives -1 per true lane: subtracting counts it
    rank = i32x4.sub(rank, f32x4.gt(v, v128.load32_splat(mids + (<usize>j << 2))));
  }
  // rank < 16 sits in each lane's low byte; the other bytes index table[0] == code 0.
  return v128.or(i8x16.swizzle(table, rank), sign);
}

/**
 * Quantizes n f32 values at src into packed 4-bit codes (ceil(n/2) bytes at outPacked) and one
 * f32 absmax per block at outAbsmax. mids: nMids f32 sorted midpoints; rankToCode: 16 bytes.
 * grid: 0, or the cell tables of the fast path (see gridCodes16), built by src/quant/quantize.ts.
 * Returns -1, or the index of the first block holding a NaN or an infinity.
 */
export function quantize4(
  src: usize, n: i32, blocksize: i32, mids: usize, nMids: i32, rankToCode: usize, signMag: bool,
  outPacked: usize, outAbsmax: usize, grid: usize,
): i32 {
  const table = v128.load(rankToCode);
  const nBlocks = (n + blocksize - 1) / blocksize;
  // every block's absmax first: the pass over the chunk (in L2) is cheaper than per-block reductions
  const bad = absmaxBlocks(src, n, blocksize, outAbsmax);
  if (bad >= 0) return bad;
  for (let b = 0; b < nBlocks; b++) {
    const start = b * blocksize;
    const len = min(blocksize, n - start);
    const p = src + (<usize>start << 2);
    const amax = load<f32>(outAbsmax + (<usize>b << 2));
    const out = outPacked + (<usize>start >> 1); // blocksize is even: blocks start on a byte
    if (amax == 0) {
      memory.fill(out, 0, <usize>((len + 1) >> 1));
      continue;
    }
    const r: f32 = 1 / amax;
    let i = 0;
    if (len == blocksize) {
      const rv = f32x4.splat(r);
      const r16: f32 = r * 16;
      if (grid != 0 && r16 <= f32.MAX_VALUE) {
        // |x * r| <= 1 + ulp and finite: the cell path needs no clamp (see gridCodes16)
        // a constant signMag per call site: each inlined loop keeps only its variant's work (the
        // NF4 one then needs fewer live registers: 0.59 -> 0.49 ns a value)
        i = signMag ? gridBlock<i8>(p, out, len, r, r16, grid, table) : gridBlock<u8>(p, out, len, r, r16, grid, table);
      } else {
        const lo = f32x4.splat(-1);
        const hi = f32x4.splat(1);
        for (; i + 8 <= len; i += 8) {
          const q = p + (<usize>i << 2);
          const s0 = f32x4.min(f32x4.max(f32x4.mul(v128.load(q), rv), lo), hi);
          const s1 = f32x4.min(f32x4.max(f32x4.mul(v128.load(q, 16), rv), lo), hi);
          const c0 = codes4(s0, mids, nMids, table, signMag);
          const c1 = codes4(s1, mids, nMids, table, signMag);
          // even elements (lanes 0, 2 of each) to the high nibble, odd ones to the low
          const e = i8x16.shuffle(c0, c1, 0, 8, 16, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
          const o = i8x16.shuffle(c0, c1, 4, 12, 20, 28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
          store<u32>(out + (<usize>i >> 1), i32x4.extract_lane(v128.or(i8x16.shl(e, 4), o), 0));
        }
      }
    }
    for (; i < len; i += 2) {
      const s0 = min<f32>(max<f32>(load<f32>(p + (<usize>i << 2)) * r, -1), 1);
      let byte = code4(s0, mids, nMids, rankToCode, signMag) << 4;
      if (i + 1 < len) {
        const s1 = min<f32>(max<f32>(load<f32>(p + (<usize>(i + 1) << 2)) * r, -1), 1);
        byte |= code4(s1, mids, nMids, rankToCode, signMag);
      }
      store<u8>(out + (<usize>i >> 1), <u8>byte);
    }
  }
  return -1;
}

// Cell path. w = 16 s (NF4) or 16 |s| (FP4, sign-magnitude), s = x * r unclamped (finite,
// |s| <= 1 + ulp). NF4 computes w = x * (16 r) directly: scaling by 16 is exact (a product that
// rounds differently is subnormal, far from every midpoint), so w > 16 m  <=>  s > m.
//   cell(w) = low byte of bits(f32(w) + 12582927) = 15 + round(w)  in -1..31 (-1 reads as 255)
// is monotone in w (every step rounds monotonically), so for any midpoint m: cell(16m) < cell(w)
// implies m < s and cell(16m) > cell(w) implies m > s. With base[c] = #{ m : cell(16m) < c }
// (base of cell -1, byte 255, reads 0) and at most one midpoint a cell, the only midpoint that
// may share w's cell is mids[base[cell]] (+inf past the last), so
//   rank = r0 + (w > 16 mids[r0]),  r0 = base[cell(w)]   exactly.
// grid layout (bytes): base[32] at 0, then byte plane k (k = 0..3) of 16 * mids[16] at 32 + 16k.
const MAGIC: f32 = 12582927; // 1.5 * 2^23 + 15: adding it rounds to an integer in the low bits

// @ts-ignore: decorator
@inline
function cellBytes(v0: v128, v1: v128, v2: v128, v3: v128): v128 {
  const mg = f32x4.splat(MAGIC);
  const lowByte = i32x4.splat(0xff);
  const k0 = v128.and(f32x4.add(v0, mg), lowByte);
  const k1 = v128.and(f32x4.add(v1, mg), lowByte);
  const k2 = v128.and(f32x4.add(v2, mg), lowByte);
  const k3 = v128.and(f32x4.add(v3, mg), lowByte);
  return i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_u(k0, k1), i16x8.narrow_i32x4_u(k2, k3));
}

/** Codes of 16 consecutive values at q (one code a byte). */
// @ts-ignore: decorator
@inline
function gridCodes16(
  q: usize, rv: v128, rv16: v128, bLo: v128, bHi: v128, p0: v128, p1: v128, p2: v128, p3: v128, table: v128, signMag: bool,
): v128 {
  let s0: v128, s1: v128, s2: v128, s3: v128;
  let v0: v128, v1: v128, v2: v128, v3: v128;
  if (signMag) {
    s0 = f32x4.mul(v128.load(q), rv);
    s1 = f32x4.mul(v128.load(q, 16), rv);
    s2 = f32x4.mul(v128.load(q, 32), rv);
    s3 = f32x4.mul(v128.load(q, 48), rv);
    const sc = f32x4.splat(16);
    v0 = f32x4.mul(f32x4.abs(s0), sc);
    v1 = f32x4.mul(f32x4.abs(s1), sc);
    v2 = f32x4.mul(f32x4.abs(s2), sc);
    v3 = f32x4.mul(f32x4.abs(s3), sc);
  } else {
    s0 = s1 = s2 = s3 = rv;
    v0 = f32x4.mul(v128.load(q), rv16);
    v1 = f32x4.mul(v128.load(q, 16), rv16);
    v2 = f32x4.mul(v128.load(q, 32), rv16);
    v3 = f32x4.mul(v128.load(q, 48), rv16);
  }
  const c = cellBytes(v0, v1, v2, v3);
  const ch = i8x16.sub(c, i8x16.splat(16)); // cells < 16 wrap to >= 240: read 0
  const r0 = v128.or(i8x16.swizzle(bLo, c), i8x16.swizzle(bHi, ch));
  const b0 = lookupSmall(p0, r0), b1 = lookupSmall(p1, r0), b2 = lookupSmall(p2, r0), b3 = lookupSmall(p3, r0);
  const m0 = planeLanes(b0, b1, b2, b3, 0), m1 = planeLanes(b0, b1, b2, b3, 1);
  const m2 = planeLanes(b0, b1, b2, b3, 2), m3 = planeLanes(b0, b1, b2, b3, 3);
  const g = i8x16.narrow_i16x8_s(
    i16x8.narrow_i32x4_s(f32x4.gt(v0, m0), f32x4.gt(v1, m1)),
    i16x8.narrow_i32x4_s(f32x4.gt(v2, m2), f32x4.gt(v3, m3)),
  );
  const rank = i8x16.sub(r0, g); // g is -1 where w > 16 mid
  if (!signMag) return rank;
  const neg = i8x16.narrow_i16x8_s(
    i16x8.narrow_i32x4_s(f32x4.lt(s0, f32x4.splat(0)), f32x4.lt(s1, f32x4.splat(0))),
    i16x8.narrow_i32x4_s(f32x4.lt(s2, f32x4.splat(0)), f32x4.lt(s3, f32x4.splat(0))),
  );
  return v128.or(lookupSmall(table, rank), v128.and(neg, i8x16.splat(8)));
}

/**
 * Codes of one full block through the cell path, 32 values a step; returns the values done.
 * Sign-magnitude (FP4) when SignMag is a signed type: a compile-time choice, so each
 * instantiation compiles only its own variant.
 */
function gridBlock<SignMag>(p: usize, out: usize, len: i32, r: f32, r16: f32, grid: usize, table: v128): i32 {
  const signMag = isSigned<SignMag>();
  const rv = f32x4.splat(r), rv16 = f32x4.splat(r16);
  const bLo = v128.load(grid), bHi = v128.load(grid, 16);
  const p0 = v128.load(grid, 32), p1 = v128.load(grid, 48), p2 = v128.load(grid, 64), p3 = v128.load(grid, 80);
  let i = 0;
  for (; i + 32 <= len; i += 32) {
    const q = p + (<usize>i << 2);
    const lo = gridCodes16(q, rv, rv16, bLo, bHi, p0, p1, p2, p3, table, signMag);
    const hi = gridCodes16(q + 64, rv, rv16, bLo, bHi, p0, p1, p2, p3, table, signMag);
    v128.store(out + (<usize>i >> 1), packNibbles(lo, hi));
  }
  return i;
}

/** 32 codes (bytes, < 16) -> 16 packed bytes, even element in the high nibble. */
// @ts-ignore: decorator
@inline
function packNibbles(lo: v128, hi: v128): v128 {
  const ff = i16x8.splat(0xff);
  // i16 lane j = c[2j] | c[2j+1] << 8  ->  (c[2j] << 4) | c[2j+1]
  const a = v128.or(i16x8.shl(v128.and(lo, ff), 4), i16x8.shr_u(lo, 8));
  const b = v128.or(i16x8.shl(v128.and(hi, ff), 4), i16x8.shr_u(hi, 8));
  return i8x16.narrow_i16x8_u(a, b);
}

// ---------------------------------------------------------------- 4-bit dequantize

/**
 * out[i] = code[q_i] * absmax[i / blocksize] (f32 multiply) for n values.
 * planes: the 16-entry f32 code table split into 4 byte planes (64 bytes: plane k holds byte k
 * of every entry), so one i8x16.swizzle per plane looks up 16 codes at once.
 */
export function dequantize4(packed: usize, n: i32, blocksize: i32, code: usize, planes: usize, absmax: usize, out: usize): void {
  const p0 = v128.load(planes);
  const p1 = v128.load(planes, 16);
  const p2 = v128.load(planes, 32);
  const p3 = v128.load(planes, 48);
  const nib = i8x16.splat(0x0f);
  const nBlocks = (n + blocksize - 1) / blocksize;
  for (let b = 0; b < nBlocks; b++) {
    const start = b * blocksize;
    const len = min(blocksize, n - start);
    const a = load<f32>(absmax + (<usize>b << 2));
    const av = f32x4.splat(a);
    const src = packed + (<usize>start >> 1);
    const dst = out + (<usize>start << 2);
    let i = 0;
    for (; i + 32 <= len; i += 32) {
      const v = v128.load(src + (<usize>i >> 1));
      const hi = i8x16.shr_u(v, 4);
      const lo = v128.and(v, nib);
      const ia = i8x16.shuffle(hi, lo, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      const ib = i8x16.shuffle(hi, lo, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
      lookup16(ia, p0, p1, p2, p3, av, dst + (<usize>i << 2));
      lookup16(ib, p0, p1, p2, p3, av, dst + (<usize>(i + 16) << 2));
    }
    for (; i < len; i++) {
      const byte = <u32>load<u8>(src + (<usize>i >> 1));
      const q = (i & 1) == 0 ? byte >> 4 : byte & 15;
      store<f32>(dst + (<usize>i << 2), load<f32>(code + (<usize>q << 2)) * a);
    }
  }
}

// @ts-ignore: decorator
@inline
function lookup16(idx: v128, p0: v128, p1: v128, p2: v128, p3: v128, av: v128, dst: usize): void {
  const b0 = lookupSmall(p0, idx), b1 = lookupSmall(p1, idx), b2 = lookupSmall(p2, idx), b3 = lookupSmall(p3, idx);
  v128.store(dst, f32x4.mul(planeLanes(b0, b1, b2, b3, 0), av));
  v128.store(dst, f32x4.mul(planeLanes(b0, b1, b2, b3, 1), av), 16);
  v128.store(dst, f32x4.mul(planeLanes(b0, b1, b2, b3, 2), av), 32);
  v128.store(dst, f32x4.mul(planeLanes(b0, b1, b2, b3, 3), av), 48);
}

// ---------------------------------------------------------------- 8-bit blockwise (double quant)

/**
 * Quantizes n f32 values blockwise to 8-bit codes with a sorted 256-entry map: code = number of
 * its 255 midpoints (at mids) strictly below the scaled value. One f32 absmax per block.
 * Returns -1, or the index of the first block holding a NaN or an infinity.
 */
export function quantize8(src: usize, n: i32, blocksize: i32, mids: usize, outCodes: usize, outAbsmax: usize): i32 {
  const nBlocks = (n + blocksize - 1) / blocksize;
  for (let b = 0; b < nBlocks; b++) {
    const start = b * blocksize;
    const len = min(blocksize, n - start);
    const p = src + (<usize>start << 2);
    const amax = absmaxOf(p, len);
    if (!(amax <= f32.MAX_VALUE)) return b;
    store<f32>(outAbsmax + (<usize>b << 2), amax);
    const r: f32 = amax == 0 ? 0 : 1 / amax;
    for (let i = 0; i < len; i++) {
      let code = 0;
      if (amax != 0) {
        const s = min<f32>(max<f32>(load<f32>(p + (<usize>i << 2)) * r, -1), 1);
        // branchless search over the 255 sorted midpoints (a data-dependent branch mispredicts
        // about every other step): after the steps 128..1, code = #{ j : s > mids[j] }
        for (let step = 128; step > 0; step >>= 1) {
          code = select<i32>(code + step, code, s > load<f32>(mids + (<usize>(code + step - 1) << 2)));
        }
      }
      store<u8>(outCodes + <usize>(start + i), <u8>code);
    }
  }
  return -1;
}

/** out[i] = map[codes[i]] * absmax[i / blocksize] + offset (two f32 roundings, no fma). */
export function dequantize8(codes: usize, n: i32, blocksize: i32, map: usize, absmax: usize, offset: f32, out: usize): void {
  for (let i = 0; i < n; i++) {
    const a = load<f32>(absmax + (<usize>(i / blocksize) << 2));
    const v: f32 = load<f32>(map + (<usize>load<u8>(codes + <usize>i) << 2)) * a;
    store<f32>(out + (<usize>i << 2), v + offset);
  }
}
