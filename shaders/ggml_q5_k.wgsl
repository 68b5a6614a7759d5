// ggml_q5_k: matmuls and embedding lookups on a Q5_K weight (lib/ggml_body.wgsl: bindings, entry
// points). Block of 256 in 176 bytes: d f16 @0, dmin f16 @2, scales[12] @4 (as Q4_K,
// lib/ggml_k_scales.wgsl), qh[32] @16, qs[128] @48 (low 4 bits as Q4_K's qs); element l of
// sub-block s (l < 32) takes bit s of qh[l] as its 5th bit; x = (d * sc) * q - dmin * m.
const BLOCK = 256u;
const BLOCK_BYTES = 176u;

//#include "lib/ggml_k_scales.wgsl"

// (d * sc, dmin * m) of the sub-block of element j: x = q * h.x - h.y
fn head32(o: u32, j: u32) -> vec2<f32> {
  let sm = scale_min_k4(o + 4u, j >> 5u);
  return vec2<f32>(rd_f16(o) * sm.x, rd_f16(o + 2u) * sm.y);
}

// elements j .. j+7 given their sub-block's head32; the 5th bit of element l of sub-block s is bit s of qh[l]
fn dq8h(o: u32, j: u32, h: vec2<f32>) -> W8 {
  let s = j >> 5u;
  let l = j & 31u;
  let b = o + 48u + (j >> 6u) * 32u + l;
  let sh = (s & 1u) * 4u;
  let lo = nib4(rd_u32(b), sh) | bit4(rd_u32(o + 16u + l), s);
  let hi = nib4(rd_u32(b + 4u), sh) | bit4(rd_u32(o + 20u + l), s);
  return W8(vec4<f32>(lo) * h.x - h.y, vec4<f32>(hi) * h.x - h.y);
}

fn dq8(o: u32, j: u32) -> W8 { return dq8h(o, j, head32(o, j)); }

//#include "lib/ggml_body.wgsl"
//#include "lib/ggml_gemv32.wgsl"
