// ggml_q8_0: matmuls and embedding lookups on a Q8_0 weight (lib/ggml_body.wgsl: bindings, entry
// points). Block of 32 in 34 bytes: d f16 @0, qs i8[32] @2; x[j] = qs[j] * d.
const BLOCK = 32u;
const BLOCK_BYTES = 34u;

fn dq8(o: u32, j: u32) -> W8 {
  let d = rd_f16(o);
  return W8(i8x4(rd_u32(o + 2u + j)) * d, i8x4(rd_u32(o + 6u + j)) * d);
}

//#include "lib/ggml_body.wgsl"
