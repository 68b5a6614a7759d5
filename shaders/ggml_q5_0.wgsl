// ggml_q5_0: matmuls and embedding lookups on a Q5_0 weight (lib/ggml_body.wgsl: bindings, entry
// points). Block of 32 in 22 bytes: d f16 @0, qh u32 @2 (bit e = 5th bit of element e), qs[16]
// @6 (low 4 bits: element j < 16 in the low nibble of qs[j], element j + 16 in its high nibble);
// x[e] = (q - 16) * d.
const BLOCK = 32u;
const BLOCK_BYTES = 22u;

fn dq8(o: u32, j: u32) -> W8 {
  let d = rd_f16(o);
  let qh = rd_u32(o + 2u);
  let b = o + 6u + (j & 15u);
  let sh = (j >> 4u) * 4u;
  // the 5th bits of elements j .. j+7, one per byte lane
  let h = vec4<u32>(qh >> j, qh >> (j + 1u), qh >> (j + 2u), qh >> (j + 3u));
  let hlo = (h & vec4<u32>(1u)) << vec4<u32>(4u);
  let hhi = ((h >> vec4<u32>(4u)) & vec4<u32>(1u)) << vec4<u32>(4u);
  return W8((vec4<f32>(nib4(rd_u32(b), sh) | hlo) - 16.0) * d, (vec4<f32>(nib4(rd_u32(b + 4u), sh) | hhi) - 16.0) * d);
}

//#include "lib/ggml_body.wgsl"
