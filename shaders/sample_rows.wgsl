// sample_rows: sample.wgsl for the R rows of a batch at once, each row with its own sampling
// parameters, so a batched decode can run several steps per host round trip: the ids feed the
// next step's embedding directly and a chunk of them is read back at once.
// Bindings:
//   logits: [R, V] f32 (read)
//   next:   [R] u32 — next[r]: the id row r's next decode step embeds
//   out:    [n, R] u32 — out[p.slot * R + r] = next[r]
//   rowp:   [R, 4] u32 — per row: seed, step (of the chunk's first step), invTemp (f32 bits), greedy
//   p: {V, R, slot, stepAdd}: the row's step is rowp step + stepAdd.
// Math per row: lib/pick_token.wgsl, as sample.wgsl (greedy argmax, lowest index on ties; else the
// Gumbel-max draw from a hash of (seed, step, i)); NaN logits pick no index (0xffffffff).
// One 64-thread workgroup per row (flattened over x/y).
struct Params { V: u32, R: u32, slot: u32, stepAdd: u32 }
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> next: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read> rowp: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;

//#include "lib/hash.wgsl"
//#include "lib/pick_token.wgsl"

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.R) { return; }
  let invTemp = bitcast<f32>(rowp[4u * r + 2u]);
  let id = pick_token(lid, r * p.V, p.V, rowp[4u * r + 3u] != 0u, invTemp, rowp[4u * r], rowp[4u * r + 1u] + p.stepAdd);
  if (lid == 0u) {
    next[r] = id;
    out[p.slot * p.R + r] = id;
  }
}
