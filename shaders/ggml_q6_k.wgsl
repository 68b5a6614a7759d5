// ggml_q6_k: matmuls and embedding lookups on a Q6_K weight (lib/ggml_body.wgsl: bindings, entry
// points). Block of 256 in 210 bytes: ql[128] @0, qh[64] @128, scales i8[16] @192, d f16 @208.
// Two halves h of 128 elements, each 4 quarters q of 32: lane l of quarter q takes the low 4 bits
// from nibble (q >= 2 ? high : low) of ql[64h + 32(q & 1) + l] and the high 2 bits from bits
// 2q .. 2q+1 of qh[32h + l]; x[e] = (d * scales[e / 16]) * (q6 - 32).
const BLOCK = 256u;
const BLOCK_BYTES = 210u;

fn q6(l4: u32, h2: u32, q: u32) -> vec4<f32> {
  let sh = (q >> 1u) * 4u;
  let hi = ((vec4<u32>(h2) >> (BYTE_SHIFTS + 2u * q)) & vec4<u32>(3u)) << vec4<u32>(4u);
  return vec4<f32>(nib4(l4, sh) | hi) - 32.0;
}

fn dq8(o: u32, j: u32) -> W8 {
  let h = j >> 7u;
  let q = (j >> 5u) & 3u;
  let l = j & 31u;
  let lb = o + 64u * h + 32u * (q & 1u) + l;
  let hb = o + 128u + 32u * h + l;
  let sc = f32(bitcast<i32>(rd_u8(o + 192u + (j >> 4u)) << 24u) >> 24u);
  let d = rd_f16(o + 208u) * sc;
  return W8(q6(rd_u32(lb), rd_u32(hb), q) * d, q6(rd_u32(lb + 4u), rd_u32(hb + 4u), q) * d);
}

//#include "lib/ggml_body.wgsl"
