// bottleneck: a bottleneck adapter module on a residual branch, fused for inference (one dispatch
// instead of two matmuls, two bias adds, an activation and an axpy; training runs those as graph
// ops for their backward). For each row n:
//   a_j       = f(sum_k Wd[j, k] * z[n, k] + bd[j])              (j < d, the bottleneck)
//   out[n, i] = r[n, i] + s * (sum_j Wu[i, j] * a_j + bu[i])     (i < D)
// with f from lib/activation_fns.wgsl (p.fn_); with p.withStream, out[n, i] = st[n, i] + that: the
// residual stream added back in the same pass (the block's add, which the base fuses into its matmul).
// Bindings: z: [N, D] f32 (the module's input); r: [N, D] f32 (what its output is added to; may be
//           the same buffer as z); wd: [d, D]; bd: [d]; wu: [D, d]; bu: [D]; st: [N, D] (the stream,
//           read when p.withStream; may alias z or r); out: [N, D] (read_write);
//           p: {N, D, d, fn_, s: f32, withStream}.
// One 64-thread workgroup per row (grid1d(N, 1)): a in workgroup memory, d <= MAX_D.
struct Params { N: u32, D: u32, d: u32, fn_: u32, s: f32, withStream: u32 }
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> r: array<f32>;
@group(0) @binding(2) var<storage, read> wd: array<f32>;
@group(0) @binding(3) var<storage, read> bd: array<f32>;
@group(0) @binding(4) var<storage, read> wu: array<f32>;
@group(0) @binding(5) var<storage, read> bu: array<f32>;
@group(0) @binding(6) var<storage, read> st: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<uniform> p: Params;

//#include "lib/activation_fns.wgsl"

const WG: u32 = 64u;
const MAX_D: u32 = 2048u;
var<workgroup> a: array<f32, MAX_D>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let n = wid.x + wid.y * nwg.x;
  if (n >= p.N) { return; }
  let row = n * p.D;
  for (var j = tid; j < p.d; j += WG) {
    var acc = bd[j];
    let w = j * p.D;
    for (var k = 0u; k < p.D; k++) { acc += wd[w + k] * z[row + k]; }
    a[j] = act_f(acc, p.fn_);
  }
  workgroupBarrier();
  for (var i = tid; i < p.D; i += WG) {
    var acc = bu[i];
    let w = i * p.d;
    for (var j = 0u; j < p.d; j++) { acc += wu[w + j] * a[j]; }
    let branch = r[row + i] + p.s * acc;
    if (p.withStream != 0u) { out[row + i] = st[row + i] + branch; } else { out[row + i] = branch; }
  }
}
