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

// d * scale of the two 16-element halves of the 32 elements from j & ~31 (scales are i8, two
// consecutive bytes at o + 192 + (j >> 4): an even offset, so rd_u32 reads them)
fn head32(o: u32, j: u32) -> vec2<f32> {
  let s = rd_u32(o + 192u + ((j >> 4u) & ~1u));
  let d = rd_f16(o + 208u);
  return vec2<f32>(d * f32(bitcast<i32>(s << 24u) >> 24u), d * f32(bitcast<i32>(s << 16u) >> 24u));
}

// elements j .. j+7 given head32 of their 32
fn dq8h(o: u32, j: u32, hd: vec2<f32>) -> W8 {
  let h = j >> 7u;
  let q = (j >> 5u) & 3u;
  let l = j & 31u;
  let lb = o + 64u * h + 32u * (q & 1u) + l;
  let hb = o + 128u + 32u * h + l;
  let d = select(hd.x, hd.y, (j & 16u) != 0u);
  return W8(q6(rd_u32(lb), rd_u32(hb), q) * d, q6(rd_u32(lb + 4u), rd_u32(hb + 4u), q) * d);
}

fn dq8(o: u32, j: u32) -> W8 { return dq8h(o, j, head32(o, j)); }

//#include "lib/ggml_body.wgsl"
//#include "lib/ggml_gemv32.wgsl"
