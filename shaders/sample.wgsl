// sample: picks the next token from one row of logits on the GPU, so decoding can run several
// steps per host round trip (the sampled id feeds the next step's embedding directly).
// Bindings:
//   logits: [V] f32 (read)
//   next:   [1] u32 — the id the next decode step embeds
//   out:    [n] u32 — out[p.slot] = id: the ids of a chunk, read back once
//   p: {V, slot, seed, step: u32, invTemp: f32, greedy: u32}
// Math: lib/pick_token.wgsl (greedy argmax, or a Gumbel-max draw from softmax(logits / T)).
// One workgroup of 64 threads.
struct Params { V: u32, slot: u32, seed: u32, step: u32, invTemp: f32, greedy: u32 }
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> next: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

//#include "lib/hash.wgsl"
//#include "lib/pick_token.wgsl"

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
  let id = pick_token(lid, 0u, p.V, p.greedy != 0u, p.invTemp, p.seed, p.step);
  if (lid == 0u) {
    next[0] = id;
    out[p.slot] = id;
  }
}
