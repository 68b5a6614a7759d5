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

//#include "lib/f16.wgsl"

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
