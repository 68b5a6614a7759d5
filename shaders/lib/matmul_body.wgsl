// matmul_body: the shared tiled / gemv matmul for shaders that include it (matmul.wgsl,
// matmul_f16.wgsl). The including file declares Params, the bindings a, b, c, p, the overrides
// TRANS_A, TRANS_B, ROWS and the element loads loadA(m, k) / loadB(k, n) -> f32; this file
// holds the store and the entry points tiled, gemv_t, gemv_n. The workgroup tiles and their
// product are lib/tile_mma.wgsl's, shared with the 4-bit matmul.

fn store(i: u32, v: f32) {
  if (p.accumulate != 0u) { c[i] = p.alpha * v + c[i]; } else { c[i] = p.alpha * v; }
}

//#include "tile_mma.wgsl"
//#include "gemv_reduce.wgsl"

@compute @workgroup_size(64)
fn tiled(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let m0 = wid.y * 64u;
  let n0 = wid.x * 64u;
  var acc: array<vec4<f32>, 16>; // this thread's 8x8 outputs, laid out as lib/tile_mma.wgsl says
  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    // Each thread loads 16 of the 1024 elements of each tile; the element order follows the
    // contiguous dimension in memory so adjacent threads read adjacent addresses.
    for (var i = 0u; i < 16u; i++) {
      let e = lid + i * 64u;
      var mm: u32; var kk: u32;
      if (TRANS_A) { mm = e % 64u; kk = e / 64u; } else { kk = e % 16u; mm = e / 16u; }
      var av = 0.0;
      if (m0 + mm < p.M && k0 + kk < p.K) { av = loadA(m0 + mm, k0 + kk); }
      As[kk * 16u + mm / 4u][mm % 4u] = av;
      var nn: u32; var kb: u32;
      if (TRANS_B) { kb = e % 16u; nn = e / 16u; } else { nn = e % 64u; kb = e / 64u; }
      var bv = 0.0;
      if (n0 + nn < p.N && k0 + kb < p.K) { bv = loadB(k0 + kb, n0 + nn); }
      Bs[kb * 16u + nn / 4u][nn % 4u] = bv;
    }
    tile_mma(&acc, lid);
  }
  tile_store(&acc, lid, m0, n0, p.M, p.N);
}


@compute @workgroup_size(64)
fn gemv_t(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g0 = (wid.x + wid.y * nwg.x) * 32u;
  if (g0 >= p.N) { return; } // uniform per workgroup: the whole group leaves together
  let kl = lid % 8u;        // K-lane: threads kl = 0..7 read 8 adjacent weights of a row
  let n0 = g0 + (lid / 8u) * 4u; // this thread's 4 columns
  // Columns past N re-read column N-1 (in range) and are dropped at the store.
  var cols: array<u32, 4>;
  for (var j = 0u; j < 4u; j++) { cols[j] = min(n0 + j, p.N - 1u); }
  var acc: array<vec4<f32>, 8>; // acc[r][j]
  for (var k = kl; k < p.K; k += 8u) {
    let bv = vec4<f32>(loadB(k, cols[0]), loadB(k, cols[1]), loadB(k, cols[2]), loadB(k, cols[3]));
    for (var r = 0u; r < ROWS; r++) { acc[r] = fma(vec4<f32>(loadA(r, k)), bv, acc[r]); }
  }
  gemv_reduce(&acc, lid, g0);
}

@compute @workgroup_size(64)
fn gemv_n(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let n = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (n >= p.N) { return; }
  var acc: array<f32, 8>;
  for (var k = 0u; k < p.K; k++) {
    let bv = loadB(k, n);
    for (var r = 0u; r < ROWS; r++) { acc[r] = fma(loadA(r, k), bv, acc[r]); }
  }
  for (var r = 0u; r < ROWS; r++) { store(r * p.N + n, acc[r]); }
}
