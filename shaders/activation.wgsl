// activation: pointwise nonlinearities and their backward, for adapter modules (bottleneck
// adapters, prompt and prefix encoders): relu, tanh, sigmoid, silu (swish), gelu (tanh form).
// Bindings: x: [n] f32 (read; the forward's input); dy: [n] f32 (read; the output gradient, unused
//           by forward entries); y: [n] f32 (read_write: forward output, or dx in backward entries);
//           p: {n, fn}: fn 0 relu, 1 tanh, 2 sigmoid, 3 silu, 4 gelu (tanh approximation).
// Entry points: forward  y = f(x);  backward  y = dy * f'(x). Grid: grid1d(n, 64).
struct Params { n: u32, fn_: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

//#include "lib/activation_fns.wgsl"

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i < p.n) { y[i] = act_f(x[i], p.fn_); }
}

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i < p.n) { y[i] = dy[i] * act_df(x[i], p.fn_); }
}
