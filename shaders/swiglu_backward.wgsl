// swiglu backward: with s = sigmoid(g), silu(g) = g * s, silu'(g) = s * (1 + g * (1 - s)):
//   dgate = dh * up * silu'(gate),  dup = dh * silu(gate).
// Bindings: dh, gate, up: [N, F] f32; dgate, dup: [N, F] f32 (outputs); p: {n}. Grid: grid1d(n, 64).
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> dh: array<f32>;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> dgate: array<f32>;
@group(0) @binding(4) var<storage, read_write> dup: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.n) { return; }
  let g = gate[i];
  let s = 1.0 / (1.0 + exp(-g));
  let d = dh[i];
  dgate[i] = d * up[i] * s * (1.0 + g * (1.0 - s));
  dup[i] = d * g * s;
}
