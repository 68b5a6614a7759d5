// f32 <-> f16 conversion, bit-exact with src/io/bytes.ts (f32ToF16: round-to-nearest-even,
// subnormal halves, overflow to ±inf, ±0 kept, NaN -> quiet NaN; f16ToF32: exact widening).
// All arithmetic is on integer bit patterns, so no float rounding mode, denormal flushing or NaN
// canonicalisation of the device can change a result.
// Bindings:
//   src: to_f16: f32 values as bits (n words); to_f32: packed halves (ceil(n/2) words, low half first)
//   dst: to_f16: packed halves (ceil(n/2) words; the odd tail's high half is 0); to_f32: f32 bits (n words)
//   p: {n: element count}
// Entry points (one thread per pair of elements = one packed word; grid of 64-thread groups
// split over x/y, index = (wid.x + wid.y * nwg.x) * 64 + lid):
//   to_f16, to_f32
// No `enable f16;`: only u32 is used, so the module also compiles where the device lacks
// shader-f16 (Dawn's OpenGL backend under Node/Bun; tests/runtimes/dawn_shaders.test.ts).

struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

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

@compute @workgroup_size(64)
fn to_f16(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = (wid.x + wid.y * nwg.x) * 64u + lid;
  let i = w * 2u;
  if (i >= p.n) { return; }
  var v = f32_bits_to_f16(src[i]);
  if (i + 1u < p.n) { v = v | (f32_bits_to_f16(src[i + 1u]) << 16u); }
  dst[w] = v;
}

@compute @workgroup_size(64)
fn to_f32(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = (wid.x + wid.y * nwg.x) * 64u + lid;
  let i = w * 2u;
  if (i >= p.n) { return; }
  let v = src[w];
  dst[i] = f16_to_f32_bits(v & 0xffffu);
  if (i + 1u < p.n) { dst[i + 1u] = f16_to_f32_bits(v >> 16u); }
}
