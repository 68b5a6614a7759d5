// AdamW's uniform parameters and its per-value update (PyTorch semantics), shared by adamw.wgsl
// and adamw8bit.wgsl (the host packs both with adamwParams, src/kernels/adamw.ts). The including
// shader declares `var<uniform> p: Params`.
//   n: values; off, count: per entry point (adamw: partials offset and count; adamw8bit: the
//   tensor's first block in its arena and the arena's blocks).
struct Params {
  n: u32, off: u32, count: u32, _pad: u32,
  lr: f32, beta1: f32, beta2: f32, eps: f32, weightDecay: f32, bc1: f32, bc2: f32, gradScale: f32,
}

// g = gi*gradScale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g²; w -= lr*wd*w;
// w -= lr * (m/bc1) / (sqrt(v/bc2) + eps), bc1 = 1-b1^t, bc2 = 1-b2^t computed on the host in f64.
// Returns (w, m, v).
fn adamwUpdate(w0: f32, gi: f32, m0: f32, v0: f32) -> vec3<f32> {
  let g = gi * p.gradScale;
  let m = p.beta1 * m0 + (1.0 - p.beta1) * g;
  let v = p.beta2 * v0 + (1.0 - p.beta2) * g * g;
  var w = w0;
  w -= p.lr * p.weightDecay * w;
  w -= p.lr * (m / p.bc1) / (sqrt(v / p.bc2) + p.eps);
  return vec3(w, m, v);
}
