// matmul_body: the shared tiled / gemv matmul for shaders that include it (matmul.wgsl,
// matmul_f16.wgsl). The including file declares Params, the bindings a, b, c, p, the overrides
// TRANS_A, TRANS_B, ROWS and the element loads loadA(m, k) / loadB(k, n) -> f32; this file
// holds the store, the workgroup tiles and the entry points tiled, gemv_t, gemv_n.

fn store(m: u32, n: u32, v: f32) {
  let i = m * p.N + n;
  if (p.accumulate != 0u) { c[i] = p.alpha * v + c[i]; } else { c[i] = p.alpha * v; }
}

const TK = 16u;
// Tiles kept k-major with 4 consecutive rows (cols) per vec4: As[k*16 + m/4][m%4], Bs[k*16 + n/4][n%4],
// so a thread fetches its 8 rows (cols) for one k as two vec4 reads.
var<workgroup> As: array<vec4<f32>, 256>;
var<workgroup> Bs: array<vec4<f32>, 256>;

@compute @workgroup_size(64)
fn tiled(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let m0 = wid.y * 64u;
  let n0 = wid.x * 64u;
  let tx = lid % 8u; // this thread's columns: n0 + tx*8 .. +7
  let ty = lid / 8u; // this thread's rows:    m0 + ty*8 .. +7
  var acc: array<vec4<f32>, 16>; // acc[i*2 + h] = row ty*8+i, cols tx*8 + h*4 .. +3
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
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      let a0 = As[kk * 16u + ty * 2u];
      let a1 = As[kk * 16u + ty * 2u + 1u];
      let b0 = Bs[kk * 16u + tx * 2u];
      let b1 = Bs[kk * 16u + tx * 2u + 1u];
      for (var i = 0u; i < 4u; i++) {
        acc[i * 2u] = fma(vec4<f32>(a0[i]), b0, acc[i * 2u]);
        acc[i * 2u + 1u] = fma(vec4<f32>(a0[i]), b1, acc[i * 2u + 1u]);
        acc[(i + 4u) * 2u] = fma(vec4<f32>(a1[i]), b0, acc[(i + 4u) * 2u]);
        acc[(i + 4u) * 2u + 1u] = fma(vec4<f32>(a1[i]), b1, acc[(i + 4u) * 2u + 1u]);
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 8u; i++) {
    let m = m0 + ty * 8u + i;
    if (m >= p.M) { break; }
    for (var j = 0u; j < 8u; j++) {
      let n = n0 + tx * 8u + j;
      if (n < p.N) { store(m, n, acc[i * 2u + j / 4u][j % 4u]); }
    }
  }
}

var<workgroup> partial: array<f32, 2048>; // [ROWS*32 outputs][8 K-lanes]

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
  for (var r = 0u; r < ROWS; r++) {
    for (var j = 0u; j < 4u; j++) { partial[(r * 32u + (lid / 8u) * 4u + j) * 8u + kl] = acc[r][j]; }
  }
  workgroupBarrier();
  for (var o = lid; o < ROWS * 32u; o += 64u) {
    let n = g0 + o % 32u;
    if (n < p.N) {
      var s = 0.0;
      for (var t = 0u; t < 8u; t++) { s += partial[o * 8u + t]; }
      store(o / 32u, n, s);
    }
  }
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
  for (var r = 0u; r < ROWS; r++) { store(r, n, acc[r]); }
}
