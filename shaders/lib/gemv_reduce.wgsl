// gemv_reduce: the end of the decode-sized (M <= 8) matmuls that give each output column 8
// K-lanes (lib/matmul_body.wgsl `gemv_t`, lib/nf4_body.wgsl `gemv8`, lib/ggml_body.wgsl `gemv`): a workgroup of 64 threads
// owns 32 output columns from g0; thread lid holds rows 0..ROWS-1 of the 4 columns
// g0 + (lid/8)*4 .. +3 summed over its K-lane lid % 8. The 8 lane sums of each output are added
// in workgroup memory. Include it from those three files only; the includer declares
// `override ROWS` and `fn store(i: u32, v: f32)` (row-major output element i = row * p.N + col).

var<workgroup> partial: array<f32, 2048>; // [ROWS*32 outputs][8 lanes]

fn gemv_reduce(acc: ptr<function, array<vec4<f32>, 8>>, lid: u32, g0: u32) {
  let lane = lid % 8u;
  for (var r = 0u; r < ROWS; r++) {
    for (var j = 0u; j < 4u; j++) { partial[(r * 32u + (lid / 8u) * 4u + j) * 8u + lane] = (*acc)[r][j]; }
  }
  workgroupBarrier();
  for (var o = lid; o < ROWS * 32u; o += 64u) {
    let n = g0 + o % 32u;
    if (n < p.N) {
      var s = 0.0;
      for (var t = 0u; t < 8u; t++) { s += partial[o * 8u + t]; }
      store((o / 32u) * p.N + n, s);
    }
  }
}

// The end of the decode-sized backward dx = dy · W (lib/nf4_body.wgsl `gemv_bwd8`,
// lib/ggml_body.wgsl `gemv_bwd`): a workgroup owns the 64 output columns col0 .. col0+63 of dx
// [ROWS, p.K]; thread lid holds rows 0..ROWS-1 of the 8 columns col0 + (lid/8)*8 .. +7
// (acc[m*2 + h] = row m, columns +h*4 .. +3) summed over its N-lane lid % 8. The 8 lanes' sums
// go through `partial` ([64 columns][8 lanes]) one row at a time; thread lid stores column col0 + lid.
fn gemv_bwd_reduce(acc: ptr<function, array<vec4<f32>, 16>>, lid: u32, col0: u32) {
  let lane = lid % 8u;
  let c = lid / 8u;
  for (var m = 0u; m < ROWS; m++) {
    for (var j = 0u; j < 8u; j++) { partial[(c * 8u + j) * 8u + lane] = (*acc)[m * 2u + j / 4u][j % 4u]; }
    workgroupBarrier();
    let col = col0 + lid;
    if (col < p.K) {
      var s = 0.0;
      for (var t = 0u; t < 8u; t++) { s += partial[lid * 8u + t]; }
      store(m * p.K + col, s);
    }
    workgroupBarrier();
  }
}
