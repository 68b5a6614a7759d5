// ggml_q4_k: matmuls and embedding lookups on a Q4_K weight (lib/ggml_body.wgsl: bindings, entry
// points). Block of 256 in 144 bytes: d f16 @0, dmin f16 @2, scales[12] @4 (eight 6-bit
// scale/min pairs, lib/ggml_k_scales.wgsl), qs[128] @16: chunk c of 64 elements is the low
// nibbles of qs[32c .. 32c+31] (sub-block 2c) then their high nibbles (sub-block 2c+1);
// x = (d * sc) * q - dmin * m with the sub-block's sc, m.
const BLOCK = 256u;
const BLOCK_BYTES = 144u;

//#include "lib/ggml_k_scales.wgsl"

// (d * sc, dmin * m) of the sub-block of element j: x = q * h.x - h.y
fn head32(o: u32, j: u32) -> vec2<f32> {
  let sm = scale_min_k4(o + 4u, j >> 5u);
  return vec2<f32>(rd_f16(o) * sm.x, rd_f16(o + 2u) * sm.y);
}

// elements j .. j+7 given their sub-block's head32
fn dq8h(o: u32, j: u32, h: vec2<f32>) -> W8 {
  let b = o + 16u + (j >> 6u) * 32u + (j & 31u);
  let sh = ((j >> 5u) & 1u) * 4u;
  return W8(vec4<f32>(nib4(rd_u32(b), sh)) * h.x - h.y, vec4<f32>(nib4(rd_u32(b + 4u), sh)) * h.x - h.y);
}

fn dq8(o: u32, j: u32) -> W8 { return dq8h(o, j, head32(o, j)); }

//#include "lib/ggml_body.wgsl"
//#include "lib/ggml_gemv32.wgsl"
