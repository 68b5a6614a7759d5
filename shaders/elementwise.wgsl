// elementwise: flat f32 ops over n elements, i = gid.x + gid.y * (groups in x) * 64.
// Bindings: x, y: inputs [n] f32 (read); z: output [n] f32. In-place ops use the *_inplace
// entry points, which read and write z (one buffer bound twice with one side writable is
// invalid WebGPU, so in place never aliases x or y with z).
//   p: {n: u32, seed: u32, threshold: u32, alpha: f32}
// Entry points:
//   add     : z = x + alpha * y;   add_inplace   : z += alpha * y  (x unused)
//   mul     : z = x * y;           mul_inplace   : z *= y          (x unused)
//   scale   : z = alpha * x;       scale_inplace : z *= alpha      (x, y unused); y unused by scale
//   dropout : z = keep(seed, i) ? alpha * x : 0, alpha = 1/(1-p), keep = hash(seed, i) >= threshold,
//             threshold = floor(p * 2^32). The mask is a pure function of (seed, i), so running
//             dropout on dy with the same seed is exactly the backward.
struct Params { n: u32, seed: u32, threshold: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> z: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * 64u; }

@compute @workgroup_size(64)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(gid, nwg);
  if (i < p.n) { z[i] = x[i] + p.alpha * y[i]; }
}

@compute @workgroup_size(64)
fn add_inplace(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(gid, nwg);
  if (i < p.n) { z[i] = z[i] + p.alpha * y[i]; }
}

@compute @workgroup_size(64)
fn mul_inplace(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(gid, nwg);
  if (i < p.n) { z[i] = z[i] * y[i]; }
}

@compute @workgroup_size(64)
fn scale_inplace(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(gid, nwg);
  if (i < p.n) { z[i] = p.alpha * z[i]; }
}

@compute @workgroup_size(64)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(gid, nwg);
  if (i < p.n) { z[i] = x[i] * y[i]; }
}

@compute @workgroup_size(64)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(gid, nwg);
  if (i < p.n) { z[i] = p.alpha * x[i]; }
}

//#include "lib/hash.wgsl"

@compute @workgroup_size(64)
fn dropout(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(gid, nwg);
  if (i < p.n) {
    let h = lowbias32(i ^ lowbias32(p.seed + 0x9e3779b9u));
    z[i] = select(0.0, p.alpha * x[i], h >= p.threshold);
  }
}

@compute @workgroup_size(64)
fn dropout_inplace(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(gid, nwg);
  if (i < p.n) {
    let h = lowbias32(i ^ lowbias32(p.seed + 0x9e3779b9u));
    z[i] = select(0.0, p.alpha * z[i], h >= p.threshold);
  }
}
