// ggml_q5_1: matmuls and embedding lookups on a Q5_1 weight (lib/ggml_body.wgsl: bindings, entry
// points). Block of 32 in 24 bytes: d f16 @0, m f16 @2, qh u32 @4 (bit e = 5th bit of element e),
// qs[16] @8 (low 4 bits as in Q4_1); x[e] = q * d + m.
const BLOCK = 32u;
const BLOCK_BYTES = 24u;

fn dq8(o: u32, j: u32) -> W8 {
  let d = rd_f16(o);
  let m = rd_f16(o + 2u);
  let qh = rd_u32(o + 4u);
  let b = o + 8u + (j & 15u);
  let sh = (j >> 4u) * 4u;
  let h = vec4<u32>(qh >> j, qh >> (j + 1u), qh >> (j + 2u), qh >> (j + 3u));
  let hlo = (h & vec4<u32>(1u)) << vec4<u32>(4u);
  let hhi = ((h >> vec4<u32>(4u)) & vec4<u32>(1u)) << vec4<u32>(4u);
  return W8(vec4<f32>(nib4(rd_u32(b), sh) | hlo) * d + m, vec4<f32>(nib4(rd_u32(b + 4u), sh) | hhi) * d + m);
}

//#include "lib/ggml_body.wgsl"
