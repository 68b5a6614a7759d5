// ggml_q5_k: matmuls and embedding lookups on a Q5_K weight (lib/ggml_body.wgsl: bindings, entry
// points). Block of 256 in 176 bytes: d f16 @0, dmin f16 @2, scales[12] @4 (as Q4_K,
// lib/ggml_k_scales.wgsl), qh[32] @16, qs[128] @48 (low 4 bits as Q4_K's qs); element l of
// sub-block s (l < 32) takes bit s of qh[l] as its 5th bit; x = (d * sc) * q - dmin * m.
const BLOCK = 256u;
const BLOCK_BYTES = 176u;

//#include "lib/ggml_k_scales.wgsl"

fn dq8(o: u32, j: u32) -> W8 {
  let s = j >> 5u;
  let sm = scale_min_k4(o + 4u, s);
  let d = rd_f16(o) * sm.x;
  let m = rd_f16(o + 2u) * sm.y;
  let l = j & 31u;
  let b = o + 48u + (j >> 6u) * 32u + l;
  let sh = (s & 1u) * 4u;
  let lo = nib4(rd_u32(b), sh) | bit4(rd_u32(o + 16u + l), s);
  let hi = nib4(rd_u32(b + 4u), sh) | bit4(rd_u32(o + 20u + l), s);
  return W8(vec4<f32>(lo) * d - m, vec4<f32>(hi) * d - m);
}

// sub-block s = j / 32 (j % 32 == 0): one scale and min; low nibbles from 8 aligned words of qs,
// 5th bits (bit s of qh[l]) from the 8 words of qh
fn dq32(o: u32, j: u32) -> array<W8, 4> {
  let s = j >> 5u;
  let sm = scale_min_k4(o + 4u, s);
  let d = rd_f16(o) * sm.x;
  let m = rd_f16(o + 2u) * sm.y;
  let b = (o + 48u + (j >> 6u) * 32u) >> 2u;
  let h = (o + 16u) >> 2u;
  let sh = (s & 1u) * 4u;
  var out: array<W8, 4>;
  for (var u = 0u; u < 4u; u++) {
    let lo = nib4(wq[b + 2u * u], sh) | bit4(wq[h + 2u * u], s);
    let hi = nib4(wq[b + 2u * u + 1u], sh) | bit4(wq[h + 2u * u + 1u], s);
    out[u] = W8(vec4<f32>(lo) * d - m, vec4<f32>(hi) * d - m);
  }
  return out;
}

//#include "lib/ggml_body.wgsl"
//#include "lib/ggml_gemv32.wgsl"
