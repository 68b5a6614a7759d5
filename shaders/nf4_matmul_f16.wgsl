// nf4_matmul_f16: shaders/nf4_matmul.wgsl with f16 activations (computeDtype "f16"): `a` holds
// IEEE halves packed two per u32 word (element i in bits 16*(i&1) of word i>>1), widened exactly
// to f32 as they are read; codes, scales, accumulation and output as in the f32 kernel.
// No `enable f16;` (Dawn's OpenGL backend has no shader-f16): integer widening, lib/f16.wgsl.

@group(0) @binding(0) var<storage, read> a: array<u32>;
fn act(i: u32) -> f32 { return bitcast<f32>(f16_to_f32_bits(a[i >> 1u] >> ((i & 1u) * 16u))); }

//#include "lib/f16.wgsl"
//#include "lib/nf4_body.wgsl"
