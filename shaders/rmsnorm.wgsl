// rmsnorm forward: y[r, c] = x[r, c] * rstd[r] * w[c], rstd[r] = 1 / sqrt(mean_c(x[r, c]^2) + eps).
// One workgroup (64 threads) per row r; the sum of squares is a strided per-thread sum followed
// by a fixed-order tree reduction in workgroup memory, so results are deterministic.
// Bindings: x: [N, C] f32; w: [C] f32; y: [N, C] f32 (may not alias x); rstd: [N] f32 (always written);
//           p: {N, C, eps: f32}. Grid: N workgroups, split over x/y when N > 65535.
struct Params { N: u32, C: u32, eps: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.N) { return; }
  let base = row * p.C;
  var ss = 0.0;
  for (var c = tid; c < p.C; c += WG) {
    let v = x[base + c];
    ss += v * v;
  }
  partial[tid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) { partial[tid] += partial[tid + s]; }
    workgroupBarrier();
  }
  let r = 1.0 / sqrt(partial[0] / f32(p.C) + p.eps);
  for (var c = tid; c < p.C; c += WG) {
    y[base + c] = x[base + c] * r * w[c];
  }
  if (tid == 0u) { rstd[row] = r; }
}
