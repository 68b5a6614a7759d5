// ggml_q4_k: matmuls and embedding lookups on a Q4_K weight (lib/ggml_body.wgsl: bindings, entry
// points). Block of 256 in 144 bytes: d f16 @0, dmin f16 @2, scales[12] @4 (eight 6-bit
// scale/min pairs, lib/ggml_k_scales.wgsl), qs[128] @16: chunk c of 64 elements is the low
// nibbles of qs[32c .. 32c+31] (sub-block 2c) then their high nibbles (sub-block 2c+1);
// x = (d * sc) * q - dmin * m with the sub-block's sc, m.
const BLOCK = 256u;
const BLOCK_BYTES = 144u;

//#include "lib/ggml_k_scales.wgsl"

fn dq8(o: u32, j: u32) -> W8 {
  let sm = scale_min_k4(o + 4u, j >> 5u);
  let d = rd_f16(o) * sm.x;
  let m = rd_f16(o + 2u) * sm.y;
  let b = o + 16u + (j >> 6u) * 32u + (j & 31u);
  let sh = ((j >> 5u) & 1u) * 4u;
  return W8(vec4<f32>(nib4(rd_u32(b), sh)) * d - m, vec4<f32>(nib4(rd_u32(b + 4u), sh)) * d - m);
}

// sub-block j / 32 (j % 32 == 0): one scale and min, 32 nibbles in 8 aligned words
fn dq32(o: u32, j: u32) -> array<W8, 4> {
  let sm = scale_min_k4(o + 4u, j >> 5u);
  let d = rd_f16(o) * sm.x;
  let m = rd_f16(o + 2u) * sm.y;
  let b = (o + 16u + (j >> 6u) * 32u) >> 2u;
  let sh = ((j >> 5u) & 1u) * 4u;
  var out: array<W8, 4>;
  for (var u = 0u; u < 4u; u++) {
    out[u] = W8(vec4<f32>(nib4(wq[b + 2u * u], sh)) * d - m, vec4<f32>(nib4(wq[b + 2u * u + 1u], sh)) * d - m);
  }
  return out;
}

//#include "lib/ggml_body.wgsl"
//#include "lib/ggml_gemv32.wgsl"
