// The token pick of sample.wgsl and sample_rows.wgsl, by one 64-thread workgroup over the V logits
// at logits[off ..]: greedy = argmax (lowest index on ties, like the host sampler); otherwise the
// Gumbel-max trick: argmax_i(logit_i / T + g_i), g_i = -log(-log(u_i)), u_i uniform in (0,1) from
// a hash of (seed, step, i): an exact draw from softmax(logits / T). NaN logits never win; a row
// of NaN picks 0xffffffff (outside the vocabulary). Strided scan, then a tree reduction of
// (score, index). Needs `logits` (storage f32) and lib/hash.wgsl in the including shader.
var<workgroup> bestScore: array<f32, 64>;
var<workgroup> bestIndex: array<u32, 64>;

// Every thread of the workgroup calls it; the pick is valid in thread 0.
fn pick_token(lid: u32, off: u32, V: u32, greedy: bool, invTemp: f32, seed: u32, step: u32) -> u32 {
  let mix = lowbias32(step ^ lowbias32(seed + 0x9e3779b9u));
  var bs = -3.402823e38;
  var bi = 0xffffffffu;
  for (var i = lid; i < V; i += 64u) {
    var s = logits[off + i];
    if (!greedy) {
      let u = (f32(lowbias32(i ^ mix) >> 8u) + 0.5) / 16777216.0;
      s = s * invTemp - log(-log(u));
    }
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
  return bestIndex[0];
}
