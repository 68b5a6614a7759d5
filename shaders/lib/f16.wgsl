// f16 <-> f32 on bit patterns (u32), bit-exact with src/io/bytes.ts (f32ToF16: round to nearest
// even, subnormal halves, overflow to ±inf, ±0 kept, NaN -> quiet NaN; f16ToF32: exact).
// Integer-only, so no device rounding mode, denormal flushing or NaN canonicalisation changes a
// result, and no shader-f16 is needed. h: the low 16 bits (higher bits are ignored).

fn f32_bits_to_f16(x: u32) -> u32 {
  let sign = (x >> 16u) & 0x8000u;
  let exp = (x >> 23u) & 0xffu;
  var mant = x & 0x7fffffu;
  if (exp == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u, mant != 0u); }
  let e = i32(exp) - 112; // rebias 127 -> 15
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    mant = mant | 0x800000u;
    let shift = u32(14 - e); // 14..24
    var half = mant >> shift;
    let rem = mant & ((1u << shift) - 1u);
    let mid = 1u << (shift - 1u);
    if (rem > mid || (rem == mid && (half & 1u) != 0u)) { half += 1u; }
    return sign | half;
  }
  var half = (u32(e) << 10u) | (mant >> 13u);
  let rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u) != 0u)) { half += 1u; } // may carry into inf
  return sign | half;
}

fn f16_to_f32_bits(h: u32) -> u32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 31u) { return sign | 0x7f800000u | (m << 13u); }
  if (e == 0u) {
    if (m == 0u) { return sign; }
    // m * 2^-24 with the leading bit of m at position q: exponent q - 24, normalised mantissa.
    let q = firstLeadingBit(m);
    return sign | ((q + 103u) << 23u) | ((m << (23u - q)) & 0x7fffffu);
  }
  return sign | ((e + 112u) << 23u) | (m << 13u);
}
