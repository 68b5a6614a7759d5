// matmul_naive: the peer for bench/matmul.ts — one output per thread, no shared memory.
// C[M,N] = op(A)·op(B); layouts as in matmul.wgsl (TRANS_A: A stored [K,M]; TRANS_B: B stored [N,K]).
// Bindings: a: f32, b: f32, c: [M,N] f32 (read_write); p: {M, N, K}
// Grid: [ceil(N/8), ceil(M/8)] workgroups of 8x8 threads.
struct Params { M: u32, N: u32, K: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

override TRANS_A: bool = false;
override TRANS_B: bool = false;

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  let m = gid.y;
  if (m >= p.M || n >= p.N) { return; }
  var s = 0.0;
  for (var k = 0u; k < p.K; k++) {
    var av: f32; var bv: f32;
    if (TRANS_A) { av = a[k * p.M + m]; } else { av = a[m * p.K + k]; }
    if (TRANS_B) { bv = b[n * p.K + k]; } else { bv = b[k * p.N + n]; }
    s = fma(av, bv, s);
  }
  c[m * p.N + n] = s;
}
