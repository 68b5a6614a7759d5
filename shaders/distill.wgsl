// distill: the generalized Jensen-Shannon divergence between a student's and a teacher's
// next-token distributions (TRL's GKD loss), per row, and its gradient w.r.t. the student's logits.
// One workgroup (64 threads) per row.
// Bindings:
//   x: student logits [N,V] f32; the gradient goes over x when p.mode == 2 (each thread reads its
//      own x[j] before it writes it, in the last pass, after every reduction has read the row).
//   dx: [N,V] f32, written (mode 1) or added to (mode 3); unused otherwise.
//   teacher: teacher logits [N,V] f32 (or log-probabilities, with invTt = 1).
//   targets: [N] i32; a row with target < 0 carries no loss and no gradient (masked like SFT).
//   loss: [N] f32, the row's divergence (0 for masked rows).
//   p: {N, V, mode: u32 (0 loss only, 1 write dx, 2 over x, 3 add into dx), kind: u32 (0 forward
//       KL, 1 reverse KL, 2 generalized JSD), beta: f32, invTs: f32 (1/temperature of the student),
//       invTt: f32 (1/temperature of the teacher), gradScale: f32}
// Math (f32, log-space): s = x·invTs, t = teacher·invTt, log S = s - lse(s), log T = t - lse(t).
//   kind 0 (beta 0): L = Σ T (log T - log S)                 dL/ds = S - T
//   kind 1 (beta 1): L = Σ S (log S - log T)                 dL/ds = S ((log S - log T) - L)
//   kind 2: log M = logaddexp(log(1-β) + log S, log β + log T),
//           L = β Σ T (log T - log M) + (1-β) Σ S (log S - log M)
//           dL/dS_k = (1-β)(log S_k - log M_k) =: g_k,       dL/ds = S (g - Σ_k S_k g_k)
//   dx = gradScale · invTs · dL/ds.
// Grid: N workgroups, split over x/y (row = wid.x + wid.y * groups in x).
struct Params { N: u32, V: u32, mode: u32, kind: u32, beta: f32, invTs: f32, invTt: f32, gradScale: f32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> teacher: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<i32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

//#include "lib/row_reduce.wgsl"

// log(exp(a) + exp(b)), exact for far-apart a and b.
fn logaddexp(a: f32, b: f32) -> f32 {
  return max(a, b) + log(1.0 + exp(-abs(a - b)));
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.N) { return; } // uniform per workgroup
  let base = row * p.V;
  let live = targets[row] >= 0;

  var ms = -3.402823e38;
  var mt = -3.402823e38;
  for (var j = lid; j < p.V; j += 64u) {
    ms = max(ms, x[base + j] * p.invTs);
    mt = max(mt, teacher[base + j] * p.invTt);
  }
  ms = reduceMax(lid, ms);
  mt = reduceMax(lid, mt);
  var ss = 0.0;
  var st = 0.0;
  for (var j = lid; j < p.V; j += 64u) {
    ss += exp(x[base + j] * p.invTs - ms);
    st += exp(teacher[base + j] * p.invTt - mt);
  }
  let lseS = ms + log(reduceSum(lid, ss));
  let lseT = mt + log(reduceSum(lid, st));
  // Only used by kind 2, where 0 < beta < 1.
  let logBeta = log(p.beta);
  let log1mBeta = log(1.0 - p.beta);

  var l = 0.0;
  var sg = 0.0; // Σ_k S_k g_k of kind 2
  for (var j = lid; j < p.V; j += 64u) {
    let ls = x[base + j] * p.invTs - lseS;
    let lt = teacher[base + j] * p.invTt - lseT;
    if (p.kind == 0u) {
      l += exp(lt) * (lt - ls);
    } else if (p.kind == 1u) {
      l += exp(ls) * (ls - lt);
    } else {
      let lm = logaddexp(log1mBeta + ls, logBeta + lt);
      let s = exp(ls);
      l += p.beta * exp(lt) * (lt - lm) + (1.0 - p.beta) * s * (ls - lm);
      sg += s * (1.0 - p.beta) * (ls - lm);
    }
  }
  l = reduceSum(lid, l); // ends with a barrier: every thread has read the row
  if (p.kind == 2u) { sg = reduceSum(lid, sg); }
  if (p.kind == 1u) { sg = l; }
  if (lid == 0u) { loss[row] = select(0.0, l, live); }
  if (p.mode == 0u) { return; }

  let scale = select(0.0, p.gradScale * p.invTs, live);
  for (var j = lid; j < p.V; j += 64u) {
    let ls = x[base + j] * p.invTs - lseS;
    let lt = teacher[base + j] * p.invTt - lseT;
    let s = exp(ls);
    var g: f32;
    if (p.kind == 0u) {
      g = s - exp(lt);
    } else if (p.kind == 1u) {
      g = s * ((ls - lt) - sg);
    } else {
      g = s * ((1.0 - p.beta) * (ls - logaddexp(log1mBeta + ls, logBeta + lt)) - sg);
    }
    let v = scale * g;
    if (p.mode == 1u) { dx[base + j] = v; } else if (p.mode == 2u) { x[base + j] = v; } else { dx[base + j] += v; }
  }
}
