// swiglu forward: h = silu(gate) * up, silu(g) = g * sigmoid(g) = g / (1 + exp(-g)).
// Elementwise over n = N * F values; exp(-g) overflowing to +inf for very negative g gives
// sigmoid = 0 (the right limit), never NaN.
// Bindings: gate, up: [N, F] f32; h: [N, F] f32 (may alias neither); p: {n}. Grid: grid1d(n, 64).
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.n) { return; }
  let g = gate[i];
  h[i] = g / (1.0 + exp(-g)) * up[i];
}
