// rope, in place, in llama.cpp's "normal" mode (adjacent pairs rotate: a = 2i, b = 2i + 1) or
// "neox" mode (pairs half a rotation apart: a = i, b = i + half).
// Row r of x is token t = r % T at position pos = pos0 + t. For head h and pair i < half
// (half = ropeDim / 2), with (c, s) = (cos, sin) of theta = pos * base^(-2i/ropeDim) / ff_i:
//   (x0, x1) = (x[r, h*D + a], x[r, h*D + b]) -> (x0*c - x1*s, x0*s + x1*c)
// inverse = 1 rotates by -theta (s -> -s): the backward of rope, and its exact undo.
// cos/sin come from a host-built table (f32 theta as llama.cpp computes it, cos/sin rounded
// once from f64) because WGSL's sin/cos are only specified to ~2^-11 and lose more on the
// large angles that long contexts produce.
// Bindings: x: [N, nHeads*D] f32 (read_write); cs: [maxPos, half, 2] f32 (cos, sin);
//           p: {N, T, pos0, nHeads, D, half, inverse, neox}. One thread per (row, head, pair): grid1d(N*nHeads*half, 64).
struct Params { N: u32, T: u32, pos0: u32, nHeads: u32, D: u32, half: u32, inverse: u32, neox: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> cs: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

//#include "lib/rope_pair.wgsl"

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 64u;
  if (idx >= p.N * p.nHeads * p.half) { return; }
  let i = idx % p.half;
  let h = (idx / p.half) % p.nHeads;
  let r = idx / (p.half * p.nHeads);
  rotate_pair(r, h, i, p.pos0 + r % p.T, p.nHeads, p.D, p.half, p.inverse != 0u, p.neox != 0u);
}
