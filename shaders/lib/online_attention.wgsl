// The online-softmax attention of one (query row, head), shared by attention.wgsl (contiguous
// cache rows) and paged_attention.wgsl (rows through a block table). One 64-thread workgroup;
// the query, already multiplied by the scale, in qs. Keys first <= j < last are visited in chunks
// of 64 (one key per thread for the score) with a running max m, running sum l and the output
// accumulator rescaled by exp(m_old - m_new). Each thread owns output dims d = tid + 64*c (c < 4,
// so D <= 256). Keys at or past `last` are never read (cache rows past them may be garbage).
// The including shader defines where key j of context `ctx` lives and how to read the caches:
//   fn kv_row(ctx: u32, j: u32) -> u32;  fn key_at(i: u32) -> f32;  fn value_at(i: u32) -> f32
// and a read_write storage array `out`. attend writes out[ooff + d] and returns log(sum_j exp(s_j)).
const WG: u32 = 64u;
const DPT: u32 = 4u;          // output dims per thread: D <= WG * DPT
const NEG: f32 = -3.0e38;     // "minus infinity" that stays finite through exp(NEG - m)
var<workgroup> qs: array<f32, 256>;
var<workgroup> probs: array<f32, WG>;
var<workgroup> red: array<f32, WG>;

// kvW: floats per cache row (Hkv * D); gD: the kv head's first column (g * D).
fn attend(tid: u32, ctx: u32, first: u32, last: u32, kvW: u32, gD: u32, D: u32, ooff: u32) -> f32 {
  var m = NEG;
  var l = 0.0;
  var acc = array<f32, DPT>(0.0, 0.0, 0.0, 0.0);
  for (var j0 = first; j0 < last; j0 += WG) {
    let j = j0 + tid;
    var s = NEG;
    if (j < last) {
      let ko = kv_row(ctx, j) * kvW + gD;
      var dot = 0.0;
      for (var d = 0u; d < D; d++) { dot += qs[d] * key_at(ko + d); }
      s = dot;
    }
    // chunk max
    red[tid] = s;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
      if (tid < st) { red[tid] = max(red[tid], red[tid + st]); }
      workgroupBarrier();
    }
    let mNew = max(m, red[0]);
    workgroupBarrier();
    let pj = select(0.0, exp(s - mNew), j < last);
    probs[tid] = pj;
    red[tid] = pj;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
      if (tid < st) { red[tid] += red[tid + st]; }
      workgroupBarrier();
    }
    let alpha = exp(m - mNew);
    l = l * alpha + red[0];
    let n = min(WG, last - j0);
    for (var c = 0u; c < DPT; c++) {
      let d = tid + c * WG;
      if (d < D) {
        var a = acc[c] * alpha;
        for (var jj = 0u; jj < n; jj++) {
          a += probs[jj] * value_at(kv_row(ctx, j0 + jj) * kvW + gD + d);
        }
        acc[c] = a;
      }
    }
    m = mNew;
    workgroupBarrier();
  }
  let inv = 1.0 / l;
  for (var c = 0u; c < DPT; c++) {
    let d = tid + c * WG;
    if (d < D) { out[ooff + d] = acc[c] * inv; }
  }
  return m + log(l);
}
