// ggml_q4_0: matmuls and embedding lookups on a Q4_0 weight (lib/ggml_body.wgsl: bindings, entry
// points). Block of 32 in 18 bytes: d f16 @0, qs[16] @2; x[j] = (lo(qs[j]) - 8) * d and
// x[j + 16] = (hi(qs[j]) - 8) * d for j < 16.
const BLOCK = 32u;
const BLOCK_BYTES = 18u;

fn dq8(o: u32, j: u32) -> W8 {
  let d = rd_f16(o);
  let b = o + 2u + (j & 15u);
  let sh = (j >> 4u) * 4u;
  return W8((vec4<f32>(nib4(rd_u32(b), sh)) - 8.0) * d, (vec4<f32>(nib4(rd_u32(b + 4u), sh)) - 8.0) * d);
}

//#include "lib/ggml_body.wgsl"
