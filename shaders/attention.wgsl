// attention forward: causal scaled-dot-product attention with grouped-query heads.
// Query row r = b*T + t (position pos0 + t), head h, kv head g = h / (Hq / Hkv):
//   s_j   = (q[r, h] . k[b*kvStride + j, g]) * scale          for keys first <= j < last = min(pos0 + t + 1, S)
// first = 0, or with a sliding window (window > 0) max(0, pos0 + t + 1 - window): p - window < j <= p.
//   out   = sum_j softmax(s)_j * v[b*kvStride + j, g],  lse[r*Hq + h] = log(sum_j exp(s_j))
// One 64-thread workgroup per (row, head), lib/online_attention.wgsl: keys in chunks of 64 (one key per thread
// for the score), with an online softmax across chunks: running max m, running sum l, and the
// output accumulator rescaled by exp(m_old - m_new). Each thread owns output dims d = tid + 64*k
// (k < 4, so D <= 256). Keys at or past `last` are never read (cache rows past S may be garbage).
// Bindings: q: [B*T, Hq*D]; k, v: [B*kvStride, Hkv*D]; out: [B*T, Hq*D]; lse: [B*T*Hq] (written when saveLse);
//           p: {B, T, S, kvStride, pos0, Hq, Hkv, D, scale: f32, window, saveLse}.
// Grid: B*T*Hq workgroups (flattened, split over x/y past 65535).
struct Params { B: u32, T: u32, S: u32, kvStride: u32, pos0: u32, Hq: u32, Hkv: u32, D: u32, scale: f32, window: u32, saveLse: u32 }
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

//#include "lib/online_attention.wgsl"

// Key j of batch b lives in cache row b * kvStride + j.
fn kv_row(b: u32, j: u32) -> u32 { return b * p.kvStride + j; }
fn key_at(i: u32) -> f32 { return k[i]; }
fn value_at(i: u32) -> f32 { return v[i]; }

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let idx = wid.x + wid.y * nwg.x;
  if (idx >= p.B * p.T * p.Hq) { return; }
  let h = idx % p.Hq;
  let row = idx / p.Hq;
  let b = row / p.T;
  let t = row % p.T;
  let g = h / (p.Hq / p.Hkv);
  let D = p.D;
  let qoff = row * p.Hq * D + h * D;
  for (var d = tid; d < D; d += WG) { qs[d] = q[qoff + d] * p.scale; }
  workgroupBarrier();

  let last = min(p.pos0 + t + 1u, p.S);
  let first = select(0u, p.pos0 + t + 1u - p.window, p.window > 0u && p.pos0 + t + 1u > p.window);
  let lse_ = attend(tid, b, first, last, p.Hkv * D, g * D, D, qoff);
  if (tid == 0u && p.saveLse != 0u) { lse[idx] = lse_; }
}
