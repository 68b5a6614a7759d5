// activation: pointwise nonlinearities and their backward, for adapter modules (bottleneck
// adapters, prompt and prefix encoders): relu, tanh, sigmoid, silu (swish), gelu (tanh form).
// Bindings: x: [n] f32 (read; the forward's input); dy: [n] f32 (read; the output gradient, unused
//           by forward entries); y: [n] f32 (read_write: forward output, or dx in backward entries);
//           p: {n, fn}: fn 0 relu, 1 tanh, 2 sigmoid, 3 silu, 4 gelu (tanh approximation).
// Entry points: forward  y = f(x);  backward  y = dy * f'(x). Grid: grid1d(n, 64).
// Sigmoid/tanh are written to saturate without NaN: exp(-|v|) never overflows.
struct Params { n: u32, fn_: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn sigm(v: f32) -> f32 {
  let e = exp(-abs(v));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}
fn th(v: f32) -> f32 {
  let e = exp(-2.0 * abs(v));
  return sign(v) * (1.0 - e) / (1.0 + e);
}
const GELU_C: f32 = 0.7978845608028654; // sqrt(2 / pi)

fn f(v: f32) -> f32 {
  switch (p.fn_) {
    case 0u: { return max(v, 0.0); }
    case 1u: { return th(v); }
    case 2u: { return sigm(v); }
    case 3u: { return v * sigm(v); }
    default: { return 0.5 * v * (1.0 + th(GELU_C * (v + 0.044715 * v * v * v))); }
  }
}

fn df(v: f32) -> f32 {
  switch (p.fn_) {
    case 0u: { return select(0.0, 1.0, v > 0.0); }
    case 1u: { let t = th(v); return 1.0 - t * t; }
    case 2u: { let s = sigm(v); return s * (1.0 - s); }
    case 3u: { let s = sigm(v); return s * (1.0 + v * (1.0 - s)); }
    default: {
      let u = GELU_C * (v + 0.044715 * v * v * v);
      let t = th(u);
      return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * v * v);
    }
  }
}

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i < p.n) { y[i] = f(x[i]); }
}

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i < p.n) { y[i] = dy[i] * df(x[i]); }
}
