// sample_rows: sample.wgsl for the R rows of a batch at once, each row with its own sampling
// parameters, so a batched decode can run several steps per host round trip: the ids feed the
// next step's embedding directly and a chunk of them is read back at once.
// Bindings:
//   logits: [R, V] f32 (read)
//   next:   [R] u32 — next[r]: the id row r's next decode step embeds
//   out:    [n, R] u32 — out[p.slot * R + r] = next[r]
//   rowp:   [R, 4] u32 — per row: seed, step (of the chunk's first step), invTemp (f32 bits), greedy
//   p: {V, R, slot, stepAdd}: the row's step is rowp step + stepAdd.
// Math per row: exactly sample.wgsl's (greedy argmax, lowest index on ties; else the Gumbel-max
// draw from a hash of (seed, step, i)); NaN logits pick no index (0xffffffff, outside the vocabulary).
// One 64-thread workgroup per row (flattened over x/y).
struct Params { V: u32, R: u32, slot: u32, stepAdd: u32 }
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> next: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read> rowp: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> bestScore: array<f32, 64>;
var<workgroup> bestIndex: array<u32, 64>;

//#include "lib/hash.wgsl"

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.R) { return; }
  let seed = rowp[4u * r];
  let step = rowp[4u * r + 1u] + p.stepAdd;
  let invTemp = bitcast<f32>(rowp[4u * r + 2u]);
  let greedy = rowp[4u * r + 3u] != 0u;
  let mix = lowbias32(step ^ lowbias32(seed + 0x9e3779b9u));
  var bs = -3.402823e38;
  var bi = 0xffffffffu;
  for (var i = lid; i < p.V; i += 64u) {
    var s = logits[r * p.V + i];
    if (!greedy) {
      let u = (f32(lowbias32(i ^ mix) >> 8u) + 0.5) / 16777216.0;
      s = s * invTemp - log(-log(u));
    }
    if (s > bs) { bs = s; bi = i; }
  }
  bestScore[lid] = bs;
  bestIndex[lid] = bi;
  for (var stride = 32u; stride > 0u; stride >>= 1u) {
    workgroupBarrier();
    if (lid < stride) {
      let s = bestScore[lid + stride];
      let j = bestIndex[lid + stride];
      if (s > bestScore[lid] || (s == bestScore[lid] && j < bestIndex[lid])) {
        bestScore[lid] = s;
        bestIndex[lid] = j;
      }
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    next[r] = bestIndex[0];
    out[p.slot * p.R + r] = bestIndex[0];
  }
}
