// matmul_f16: C[M,N] = alpha * op(A) · op(B)  (+ C when accumulate != 0), A and B in f16,
// accumulation and C in f32 (so LoRA factors / master weights can stay f32).
// Same structure, layouts, entry points and grids as shaders/matmul.wgsl (tiled 64x64 tiles with
// 8x8 outputs per thread; gemv_t / gemv_n for M <= 8); only the loads differ: each f16 element is
// widened to f32 as it is read (f16 -> f32 is exact), and the workgroup tiles hold f32. Products
// of two widened halves are exact in f32 (11 x 11 significant bits), so the only rounding is the
// f32 accumulation, as in the f32 kernel.
//   op(A) = A stored [M,K] (row-major), or A stored [K,M] when TRANS_A;
//   op(B) = B stored [K,N],             or B stored [N,K] when TRANS_B.
// Bindings:
//   a: op(A) source, read from element p.aOff on (f16, as packed u32)
//   b: op(B) source, read from element p.bOff on (f16, as packed u32)
//   c: [M,N] f32 (read_write; read only when accumulate)
//   p: {M, N, K, aOff, bOff, accumulate: u32, alpha: f32}
// ROWS (override, 1..8) is M for the gemv entry points.
// The halves are bound as packed u32 words (element i = bits 16*(i&1).. of word i>>1) and widened
// with integer bit operations, not as array<f16>: Dawn's OpenGL backend (Node/Bun) has no
// shader-f16, and every shader must compile there (tests/runtimes/dawn_shaders.test.ts). The
// integer widening is exact for subnormals too, whatever the device's denormal mode.

struct Params { M: u32, N: u32, K: u32, aOff: u32, bOff: u32, accumulate: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read> a: array<u32>;
@group(0) @binding(1) var<storage, read> b: array<u32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ROWS: u32 = 1u;

//#include "lib/f16.wgsl"

fn halfA(i: u32) -> f32 { return bitcast<f32>(f16_to_f32_bits(a[i >> 1u] >> ((i & 1u) * 16u))); }
fn halfB(i: u32) -> f32 { return bitcast<f32>(f16_to_f32_bits(b[i >> 1u] >> ((i & 1u) * 16u))); }

// op(A)[m,k] and op(B)[k,n] widened to f32 (exact); callers keep indices in range.
fn loadA(m: u32, k: u32) -> f32 {
  if (TRANS_A) { return halfA(p.aOff + k * p.M + m); }
  return halfA(p.aOff + m * p.K + k);
}
fn loadB(k: u32, n: u32) -> f32 {
  if (TRANS_B) { return halfB(p.bOff + n * p.K + k); }
  return halfB(p.bOff + k * p.N + n);
}

//#include "lib/matmul_body.wgsl"
