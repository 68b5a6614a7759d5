// ggml_k_scales: the 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block, packed in
// the 12 bytes at byte offset s (ggml's get_scale_min_k4): j < 4: scale = bytes[j] & 63, min =
// bytes[j + 4] & 63; j >= 4: the low 4 bits in bytes[j + 4] (scale low nibble, min high nibble),
// the high 2 bits in the top bits of bytes[j - 4] (scale) and bytes[j] (min).
// Included by shaders/ggml_q4_k.wgsl and ggml_q5_k.wgsl (rd_u8 is lib/ggml_body.wgsl's).
fn scale_min_k4(s: u32, j: u32) -> vec2<f32> {
  if (j < 4u) { return vec2<f32>(f32(rd_u8(s + j) & 63u), f32(rd_u8(s + j + 4u) & 63u)); }
  let lo = rd_u8(s + j + 4u);
  return vec2<f32>(f32((lo & 15u) | ((rd_u8(s + j - 4u) >> 6u) << 4u)), f32((lo >> 4u) | ((rd_u8(s + j) >> 6u) << 4u)));
}
