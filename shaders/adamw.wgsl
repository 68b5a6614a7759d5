// adamw: the optimizer step and the squared-norm reduction used for global grad-norm clipping.
// Bindings:
//   param, grad, m, v: [n] f32 (param/m/v read_write, updated in place; grad read)
//   partials: [count] f32 scratch for the two-stage reduction; total: [1] f32 result
//   p: Params of lib/adamw_update.wgsl {n, off (partials offset), count, _pad: u32, lr, beta1, beta2,
//      eps, weightDecay, bc1, bc2, gradScale: f32}
// Entry points:
//   step         : PyTorch AdamW (decoupled weight decay, bias correction), per element i < n:
//                  g = grad*gradScale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g²;
//                  param -= lr*wd*param; param -= lr * (m/bc1) / (sqrt(v/bc2) + eps),
//                  bc1 = 1-b1^t, bc2 = 1-b2^t computed on the host in f64.
//                  1D index i = gid.x + gid.y * (groups in x) * 64.
//   partial_sums : stage 1 over `grad` (the tensor being measured): workgroup g of G sums
//                  grad[i]² for i = g*64 + lid + k*G*64 and writes partials[off + g].
//   final_sum    : stage 2, one workgroup: total[0] = Σ partials[0..count). Fixed order: deterministic.
//#include "lib/adamw_update.wgsl"
@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;
@group(0) @binding(5) var<storage, read_write> total: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

@compute @workgroup_size(64)
fn step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.n) { return; }
  let r = adamwUpdate(param[i], grad[i], m[i], v[i]);
  param[i] = r.x;
  m[i] = r.y;
  v[i] = r.z;
}

var<workgroup> red: array<f32, 64>;

// Tree sum of red[0..64) into red[0]; every thread of the workgroup must call it.
fn reduceWorkgroup(lid: u32) {
  for (var s = 32u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) { red[lid] += red[lid + s]; }
  }
  workgroupBarrier();
}

@compute @workgroup_size(64)
fn partial_sums(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * 64u;
  var s = 0.0;
  for (var i = wid.x * 64u + lid; i < p.n; i += stride) { s = fma(grad[i], grad[i], s); }
  red[lid] = s;
  reduceWorkgroup(lid);
  if (lid == 0u) { partials[p.off + wid.x] = red[0]; }
}

@compute @workgroup_size(64)
fn final_sum(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < p.count; i += 64u) { s += partials[i]; }
  red[lid] = s;
  reduceWorkgroup(lid);
  if (lid == 0u) { total[0] = red[0]; }
}
