// attention backward (see attention.wgsl for the forward). With s_ij = scale * q_i . k_j,
// P_ij = exp(s_ij - lse_i) (recomputed from the saved log-sum-exp), dO = dout:
//   delta_i = dO_i . out_i                                   (entry delta_rows)
//   dS_ij   = P_ij * (dO_i . v_j - delta_i)
//   dq_i    = scale * sum_j dS_ij k_j                        (entry dq_rows)
//   dk_j    = scale * sum_(i,h in group) dS_ij q_i,   dv_j = sum_(i,h in group) P_ij dO_i   (entry dkv_rows)
// Here i runs over (query row, head) and j over the keys that query sees (first <= j < min(pos0 + t + 1, S),
// first > 0 only with a sliding window: see attention.wgsl).
// dk/dv: one workgroup per kv row and kv head loops over every (query, head) pair that sees it,
// so each gradient element is written exactly once, in a fixed order: deterministic, no atomics,
// and keys no query sees (including cache rows >= S) get exactly zero.
// Bindings: dout, q, out: [B*T, Hq*D]; k, v: [B*kvStride, Hkv*D]; lse, delta: [B*T*Hq];
//           dq: [B*T, Hq*D]; dk, dv: [B*kvStride, Hkv*D]; p: {B, T, S, kvStride, pos0, Hq, Hkv, D, scale: f32, window}.
// Grids: delta_rows: grid1d(B*T*Hq, 64); dq_rows: B*T*Hq workgroups; dkv_rows: B*kvStride*Hkv workgroups.
struct Params { B: u32, T: u32, S: u32, kvStride: u32, pos0: u32, Hq: u32, Hkv: u32, D: u32, scale: f32, window: u32 }
@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> out: array<f32>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read_write> delta: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;
@group(0) @binding(8) var<storage, read_write> dk: array<f32>;
@group(0) @binding(9) var<storage, read_write> dv: array<f32>;
@group(0) @binding(10) var<uniform> p: Params;

const WG: u32 = 64u;
const DPT: u32 = 4u;  // dims per thread: D <= 256
var<workgroup> va: array<f32, 256>;   // dq_rows: dout_i (scaled q not needed); dkv_rows: k_j
var<workgroup> vb: array<f32, 256>;   // dq_rows: q_i;                       dkv_rows: v_j
var<workgroup> wa: array<f32, WG>;    // per-chunk weights: dq_rows: dS; dkv_rows: P
var<workgroup> wb: array<f32, WG>;    // dkv_rows: dS

@compute @workgroup_size(64)
fn delta_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 64u;
  if (idx >= p.B * p.T * p.Hq) { return; }
  let o = idx * p.D;  // (row*Hq + h) * D
  var s = 0.0;
  for (var d = 0u; d < p.D; d++) { s += dout[o + d] * out[o + d]; }
  delta[idx] = s;
}

@compute @workgroup_size(WG)
fn dq_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let idx = wid.x + wid.y * nwg.x;
  if (idx >= p.B * p.T * p.Hq) { return; }
  let h = idx % p.Hq;
  let row = idx / p.Hq;
  let b = row / p.T;
  let t = row % p.T;
  let g = h / (p.Hq / p.Hkv);
  let D = p.D;
  let qoff = idx * D;
  for (var d = tid; d < D; d += WG) {
    va[d] = dout[qoff + d];
    vb[d] = q[qoff + d];
  }
  workgroupBarrier();
  let li = lse[idx];
  let di = delta[idx];
  let last = min(p.pos0 + t + 1u, p.S);
  let first = select(0u, p.pos0 + t + 1u - p.window, p.window > 0u && p.pos0 + t + 1u > p.window);
  let kvRow0 = b * p.kvStride;
  let kvW = p.Hkv * D;
  var acc = array<f32, DPT>(0.0, 0.0, 0.0, 0.0);
  for (var j0 = first; j0 < last; j0 += WG) {
    let j = j0 + tid;
    var ds = 0.0;
    if (j < last) {
      let ko = (kvRow0 + j) * kvW + g * D;
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < D; d++) {
        s += vb[d] * k[ko + d];
        dp += va[d] * v[ko + d];
      }
      ds = exp(s * p.scale - li) * (dp - di);
    }
    wa[tid] = ds;
    workgroupBarrier();
    let n = min(WG, last - j0);
    for (var c = 0u; c < DPT; c++) {
      let d = tid + c * WG;
      if (d < D) {
        var a = acc[c];
        var ko = (kvRow0 + j0) * kvW + g * D + d;
        for (var jj = 0u; jj < n; jj++) {
          a += wa[jj] * k[ko];
          ko += kvW;
        }
        acc[c] = a;
      }
    }
    workgroupBarrier();
  }
  for (var c = 0u; c < DPT; c++) {
    let d = tid + c * WG;
    if (d < D) { dq[qoff + d] = acc[c] * p.scale; }
  }
}

@compute @workgroup_size(WG)
fn dkv_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let idx = wid.x + wid.y * nwg.x;
  if (idx >= p.B * p.kvStride * p.Hkv) { return; }
  let g = idx % p.Hkv;
  let kvRow = idx / p.Hkv;
  let b = kvRow / p.kvStride;
  let j = kvRow % p.kvStride;
  let D = p.D;
  let G = p.Hq / p.Hkv;
  let kvo = idx * D;  // (kvRow*Hkv + g) * D
  // Queries t >= j - pos0 see key j (when j < S), with a window only while pos0 + t < j + window:
  // pairs (t, head in group) for t in [tStart, tEnd).
  var count = 0u;
  var tStart = 0u;
  if (j < p.S) {
    tStart = select(0u, j - p.pos0, j > p.pos0);
    var tEnd = p.T;
    if (p.window > 0u) { tEnd = select(0u, min(p.T, j + p.window - p.pos0), j + p.window > p.pos0); }
    if (tStart < tEnd) { count = (tEnd - tStart) * G; }
  }
  if (count > 0u) {
    for (var d = tid; d < D; d += WG) {
      va[d] = k[kvo + d];
      vb[d] = v[kvo + d];
    }
  }
  workgroupBarrier();
  var accK = array<f32, DPT>(0.0, 0.0, 0.0, 0.0);
  var accV = array<f32, DPT>(0.0, 0.0, 0.0, 0.0);
  for (var c0 = 0u; c0 < count; c0 += WG) {
    let pr = c0 + tid;
    var pj = 0.0;
    var ds = 0.0;
    if (pr < count) {
      let i = (b * p.T + tStart + pr / G) * p.Hq + g * G + pr % G;  // (row, head) index
      let qo = i * D;
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < D; d++) {
        s += q[qo + d] * va[d];
        dp += dout[qo + d] * vb[d];
      }
      pj = exp(s * p.scale - lse[i]);
      ds = pj * (dp - delta[i]);
    }
    wa[tid] = pj;
    wb[tid] = ds;
    workgroupBarrier();
    let n = min(WG, count - c0);
    for (var c = 0u; c < DPT; c++) {
      let d = tid + c * WG;
      if (d < D) {
        var ak = accK[c];
        var av = accV[c];
        for (var pp = 0u; pp < n; pp++) {
          let pr2 = c0 + pp;
          let qo = ((b * p.T + tStart + pr2 / G) * p.Hq + g * G + pr2 % G) * D + d;
          ak += wb[pp] * q[qo];
          av += wa[pp] * dout[qo];
        }
        accK[c] = ak;
        accV[c] = av;
      }
    }
    workgroupBarrier();
  }
  for (var c = 0u; c < DPT; c++) {
    let d = tid + c * WG;
    if (d < D) {
      dk[kvo + d] = accK[c] * p.scale;
      dv[kvo + d] = accV[c];
    }
  }
}
