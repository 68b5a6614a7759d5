// rope_rows: rope.wgsl with a position per row (a ragged batch: rows of several sequences, each
// at its own position), in place. Row r is at position pos[r]; for head h and pair i < half, with
// (a, b) = (2i, 2i + 1) in "normal" mode or (i, i + half) in "neox" mode:
//   (x0, x1) = (x[r, h*D + a], x[r, h*D + b]) -> (x0*c - x1*s, x0*s + x1*c)
// with (c, s) from the same host-built cos/sin table as rope.wgsl (so results are bit-identical).
// Bindings: x: [N, nHeads*D] f32 (read_write); cs: [maxPos, half, 2] f32; pos: [N] u32;
//           p: {N, nHeads, D, half, neox}. One thread per (row, head, pair): grid1d(N*nHeads*half, 64).
struct Params { N: u32, nHeads: u32, D: u32, half: u32, neox: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> cs: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

//#include "lib/rope_pair.wgsl"

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 64u;
  if (idx >= p.N * p.nHeads * p.half) { return; }
  let i = idx % p.half;
  let h = (idx / p.half) % p.nHeads;
  let r = idx / (p.half * p.nHeads);
  rotate_pair(r, h, i, pos[r], p.nHeads, p.D, p.half, false, p.neox != 0u);
}
