// rmsnorm backward. With y = x * rstd * w and g = w * dy:
//   dx[r, c] = rstd[r] * g[r, c] - x[r, c] * rstd[r]^3 / C * sum_c'(g[r, c'] * x[r, c'])   (entry dx_rows)
//   dw[c]    = sum_r dy[r, c] * x[r, c] * rstd[r]                                      (entry dw_cols)
// Both use one 64-thread workgroup (per row / per column) with a fixed-order tree reduction:
// no atomics, bitwise deterministic.
// Bindings: dy, x: [N, C] f32; w: [C]; rstd: [N] (saved by the forward); dx: [N, C] (out);
//           dw: [C] (out, only written by dw_cols); p: {N, C}.
// Grid: dx_rows: N workgroups; dw_cols: C workgroups (split over x/y past 65535).
struct Params { N: u32, C: u32 }
@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> dw: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, WG>;

fn reduce(tid: u32, v: f32) -> f32 {
  partial[tid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) { partial[tid] += partial[tid + s]; }
    workgroupBarrier();
  }
  return partial[0];
}

@compute @workgroup_size(WG)
fn dx_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.N) { return; }
  let base = row * p.C;
  var acc = 0.0;
  for (var c = tid; c < p.C; c += WG) {
    acc += w[c] * dy[base + c] * x[base + c];
  }
  let dot = reduce(tid, acc);
  let r = rstd[row];
  let k = r * r * r * dot / f32(p.C);
  for (var c = tid; c < p.C; c += WG) {
    dx[base + c] = r * w[c] * dy[base + c] - x[base + c] * k;
  }
}

@compute @workgroup_size(WG)
fn dw_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let col = wid.x + wid.y * nwg.x;
  if (col >= p.C) { return; }
  var acc = 0.0;
  for (var r = tid; r < p.N; r += WG) {
    acc += dy[r * p.C + col] * x[r * p.C + col] * rstd[r];
  }
  let total = reduce(tid, acc);
  if (tid == 0u) { dw[col] = total; }
}
