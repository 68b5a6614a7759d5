// fill: y[i] = value for i < n. Used to initialise buffers (e.g. masks, constants).
// Bindings: y: [n] f32 (read_write); p: {n: u32, value: f32}
struct Params { n: u32, value: f32 }
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i < p.n) { y[i] = p.value; }
}
