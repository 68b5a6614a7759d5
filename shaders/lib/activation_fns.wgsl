// Pointwise nonlinearities of adapter modules, by index: 0 relu, 1 tanh, 2 sigmoid, 3 silu (swish),
// 4 gelu (tanh approximation); act_f is f(v), act_df its derivative f'(v). Sigmoid/tanh are written
// to saturate without NaN: exp(-|v|) never overflows. Used by activation.wgsl and bottleneck.wgsl.
fn act_sigm(v: f32) -> f32 {
  let e = exp(-abs(v));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}
fn act_th(v: f32) -> f32 {
  let e = exp(-2.0 * abs(v));
  return sign(v) * (1.0 - e) / (1.0 + e);
}
const ACT_GELU_C: f32 = 0.7978845608028654; // sqrt(2 / pi)

fn act_f(v: f32, fn_: u32) -> f32 {
  switch (fn_) {
    case 0u: { return max(v, 0.0); }
    case 1u: { return act_th(v); }
    case 2u: { return act_sigm(v); }
    case 3u: { return v * act_sigm(v); }
    default: { return 0.5 * v * (1.0 + act_th(ACT_GELU_C * (v + 0.044715 * v * v * v))); }
  }
}

fn act_df(v: f32, fn_: u32) -> f32 {
  switch (fn_) {
    case 0u: { return select(0.0, 1.0, v > 0.0); }
    case 1u: { let t = act_th(v); return 1.0 - t * t; }
    case 2u: { let s = act_sigm(v); return s * (1.0 - s); }
    case 3u: { let s = act_sigm(v); return s * (1.0 + v * (1.0 - s)); }
    default: {
      let u = ACT_GELU_C * (v + 0.044715 * v * v * v);
      let t = act_th(u);
      return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * ACT_GELU_C * (1.0 + 3.0 * 0.044715 * v * v);
    }
  }
}
