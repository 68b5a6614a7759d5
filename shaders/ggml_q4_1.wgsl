// ggml_q4_1: matmuls and embedding lookups on a Q4_1 weight (lib/ggml_body.wgsl: bindings, entry
// points). Block of 32 in 20 bytes: d f16 @0, m f16 @2, qs[16] @4; x[j] = lo(qs[j]) * d + m and
// x[j + 16] = hi(qs[j]) * d + m for j < 16.
const BLOCK = 32u;
const BLOCK_BYTES = 20u;

fn dq8(o: u32, j: u32) -> W8 {
  let d = rd_f16(o);
  let m = rd_f16(o + 2u);
  let b = o + 4u + (j & 15u);
  let sh = (j >> 4u) * 4u;
  return W8(vec4<f32>(nib4(rd_u32(b), sh)) * d + m, vec4<f32>(nib4(rd_u32(b + 4u), sh)) * d + m);
}

//#include "lib/ggml_body.wgsl"
