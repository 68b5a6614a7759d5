// ggml_bf16: matmuls and embedding lookups on a BF16 weight (lib/ggml_body.wgsl: bindings, entry
// points). Each element is the top half of an f32; the kernels read groups of 8 (16 bytes), so
// rows need K % 8 == 0.
const BLOCK = 8u;
const BLOCK_BYTES = 16u;

fn bf16x2(w: u32) -> vec2<f32> { return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u)); }

fn dq8(o: u32, j: u32) -> W8 {
  let i = o >> 2u;
  return W8(vec4<f32>(bf16x2(wq[i]), bf16x2(wq[i + 1u])), vec4<f32>(bf16x2(wq[i + 2u]), bf16x2(wq[i + 3u])));
}

//#include "lib/ggml_body.wgsl"
