// cross_entropy: fused softmax cross-entropy over the vocabulary, one workgroup (64 threads) per row.
// Bindings:
//   x: logits [N,V] f32; dx: dlogits [N,V] f32, written only when p.grad == 1.
//      In place (p.grad == 2) the gradient goes over x and dx is unused: each thread reads x[i]
//      before it writes it, and the target logit is read before the first write (barrier between).
//      (One buffer bound to both x and dx would be invalid WebGPU: writable aliasing.)
//   targets: [N] i32; target < 0 is ignored (loss 0, gradient 0); target >= V gives loss NaN.
//   loss: [N] f32
//   p: {N, V, grad: u32 (0 none, 1 into dx, 2 into x), gradScale: f32}
// Math (f32, max-subtracted): loss[n] = log Σ_j exp(x[n,j] - mx) + mx - x[n,t];
//   dx[n,j] = gradScale * (exp(x[n,j] - mx) / Σ - [j == t]).
// Grid: N workgroups, split over x/y (row = wid.x + wid.y * groups in x).
struct Params { N: u32, V: u32, grad: u32, gradScale: f32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

//#include "lib/row_reduce.wgsl"

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.N) { return; } // uniform per workgroup
  let base = row * p.V;
  let t = targets[row];
  let valid = t >= 0 && u32(t) < p.V;
  var xt = 0.0;
  if (valid) { xt = x[base + u32(t)]; } // read before any thread overwrites the row (in place)

  var mx = -3.402823e38;
  for (var j = lid; j < p.V; j += 64u) { mx = max(mx, x[base + j]); }
  mx = reduceMax(lid, mx);
  var se = 0.0;
  for (var j = lid; j < p.V; j += 64u) { se += exp(x[base + j] - mx); }
  se = reduceSum(lid, se); // ends with a barrier: every thread has read xt and the row

  if (lid == 0u) {
    if (t < 0) { loss[row] = 0.0; }
    // NaN for a target out of vocabulary; built from a runtime value because Tint (Dawn) rejects a
    // constant NaN.
    else if (!valid) { loss[row] = bitcast<f32>(0x7fc00000u | (p.V & 0u)); }
    else { loss[row] = log(se) + (mx - xt); } // (mx - xt) first: exact for large logits
  }
  if (p.grad != 0u) {
    let inv = 1.0 / se;
    for (var j = lid; j < p.V; j += 64u) {
      var g = 0.0;
      if (t >= 0) { g = exp(x[base + j] - mx) * inv - select(0.0, 1.0, i32(j) == t); }
      if (p.grad == 2u) { x[base + j] = p.gradScale * g; } else { dx[base + j] = p.gradScale * g; }
    }
  }
}
