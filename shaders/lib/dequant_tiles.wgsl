// dequant_tiles: the tiled (M > 8) entry points of the matmuls that dequantize their weight on the
// fly, shared by lib/nf4_body.wgsl (NF4/FP4) and lib/ggml_body.wgsl (ggml block formats):
//   tiled_fwd: y[m, n] = alpha * sum_k a[m, k] * W[n, k]   a = x [M, K], y [M, N]  (y = x · Wᵀ)
//   tiled_bwd: y[m, k] = alpha * sum_n a[m, n] * W[n, k]   a = dy [M, N], y = dx [M, K]  (dx = dy · W)
// (+ y when p.accumulate != 0). The f32 matmul's tiling: a 64x64 output tile per workgroup of 64
// threads, the tiles and their product from lib/tile_mma.wgsl; each thread dequantizes 16
// consecutive elements of one W row per reduction step into the B tile. Grid [ceil(N/64) or
// ceil(K/64), ceil(M/64)].
// The includer declares `p` (with fields M, N, K, accumulate, alpha), the output `y`,
// `fn act(i: u32) -> f32` (element i of a as f32), `fn prepare_tile(lid: u32)` (run first by
// every thread, e.g. to load a code table into workgroup memory; it must end in a barrier if it
// writes one) and `fn decode16(n: u32, k0: u32) -> array<f32, 16>`: W[n, k0 .. k0+15], zero past
// the row's end or when n >= N.

fn store(i: u32, v: f32) {
  var r = p.alpha * v;
  if (p.accumulate != 0u) { r = r + y[i]; }
  y[i] = r;
}

//#include "tile_mma.wgsl"

// As <- a[m0 .. m0+63, r0 .. r0+15] of the row-major activations a [M, R] (R = K forward, N
// backward), zero past the edges.
fn load_a_tile(lid: u32, m0: u32, r0: u32, R: u32) {
  for (var i = 0u; i < 16u; i++) {
    let e = lid + i * 64u;
    let rr = e % 16u;
    let mm = e / 16u;
    var av = 0.0;
    if (m0 + mm < p.M && r0 + rr < R) { av = act((m0 + mm) * R + r0 + rr); }
    As[rr * 16u + mm / 4u][mm % 4u] = av;
  }
}

@compute @workgroup_size(64)
fn tiled_fwd(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  prepare_tile(lid);
  let m0 = wid.y * 64u;
  let n0 = wid.x * 64u;
  var acc: array<vec4<f32>, 16>;
  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    load_a_tile(lid, m0, k0, p.K);
    // thread lid dequantizes W[n0 + lid, k0 .. k0+15]
    let w = decode16(n0 + lid, k0);
    for (var kk = 0u; kk < 16u; kk++) { Bs[kk * 16u + lid / 4u][lid % 4u] = w[kk]; }
    tile_mma(&acc, lid);
  }
  tile_store(&acc, lid, m0, n0, p.M, p.N);
}

@compute @workgroup_size(64)
fn tiled_bwd(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  prepare_tile(lid);
  let m0 = wid.y * 64u;
  let c0 = wid.x * 64u; // output columns are k
  var acc: array<vec4<f32>, 16>;
  for (var n0 = 0u; n0 < p.N; n0 += TK) {
    load_a_tile(lid, m0, n0, p.N);
    // thread lid dequantizes W[n0 + lid/4, c0 + (lid%4)*16 .. +15]: reduction row r, 16 columns
    let r = lid / 4u;
    let q = lid % 4u;
    let w = decode16(n0 + r, c0 + q * 16u);
    for (var j = 0u; j < 4u; j++) {
      Bs[r * 16u + q * 4u + j] = vec4<f32>(w[j * 4u], w[j * 4u + 1u], w[j * 4u + 2u], w[j * 4u + 3u]);
    }
    tile_mma(&acc, lid);
  }
  tile_store(&acc, lid, m0, c0, p.M, p.K);
}
