// sample: picks the next token from one row of logits on the GPU, so decoding can run several
// steps per host round trip (the sampled id feeds the next step's embedding directly).
// Bindings:
//   logits: [V] f32 (read)
//   next:   [1] u32 — the id the next decode step embeds
//   out:    [n] u32 — out[p.slot] = id: the ids of a chunk, read back once
//   p: {V, slot, seed, step: u32, invTemp: f32, greedy: u32}
// Math: greedy = argmax (lowest index on ties, like the host sampler). Otherwise the Gumbel-max
// trick: argmax_i(logit_i / T + g_i), g_i = -log(-log(u_i)), u_i uniform in (0,1) from a hash of
// (seed, step, i) — an exact draw from softmax(logits / T).
// One workgroup of 64 threads: strided scan, then a tree reduction of (score, index).
struct Params { V: u32, slot: u32, seed: u32, step: u32, invTemp: f32, greedy: u32 }
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> next: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> bestScore: array<f32, 64>;
var<workgroup> bestIndex: array<u32, 64>;

//#include "lib/hash.wgsl"

fn score(i: u32) -> f32 {
  if (p.greedy != 0u) { return logits[i]; }
  let h = lowbias32(i ^ lowbias32(p.step ^ lowbias32(p.seed + 0x9e3779b9u)));
  let u = (f32(h >> 8u) + 0.5) / 16777216.0;
  return logits[i] * p.invTemp - log(-log(u));
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
  var bs = -3.402823e38;
  var bi = 0xffffffffu;
  for (var i = lid; i < p.V; i += 64u) {
    let s = score(i);
    if (s > bs) { bs = s; bi = i; } // strided ascending scan: first max per thread
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
    next[0] = bestIndex[0];
    out[p.slot] = bestIndex[0];
  }
}
