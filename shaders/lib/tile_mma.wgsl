// tile_mma: the register-blocked 64x64 tile product shared by the tiled entry points of
// lib/matmul_body.wgsl (`tiled`) and lib/dequant_tiles.wgsl (`tiled_fwd`, `tiled_bwd`), which differ
// only in how they fill the tiles. Include it from those two files only: a module that included it
// twice would declare everything twice. The including file declares `fn store(i: u32, v: f32)`,
// which writes output element i (row-major, i = row * cols + col).
//
// A workgroup of 64 threads owns a 64x64 output tile; thread lid owns the 8x8 outputs at rows
// ty*8 .. +7 and columns tx*8 .. +7 of it (tx = lid % 8, ty = lid / 8), accumulated in
// acc: array<vec4<f32>, 16>, acc[i*2 + h] = row ty*8+i, columns tx*8 + h*4 .. +3.
// The reduction runs TK at a time through the tiles As (64 rows x TK) and Bs (TK x 64 columns),
// which the caller fills, zero past the matrix edges, before each tile_mma.

const TK = 16u;
// Tiles kept k-major with 4 consecutive rows (cols) per vec4: As[k*16 + m/4][m%4], Bs[k*16 + n/4][n%4],
// so a thread fetches its 8 rows (cols) for one k as two vec4 reads.
var<workgroup> As: array<vec4<f32>, 256>;
var<workgroup> Bs: array<vec4<f32>, 256>;

// Adds the product of the tiles just filled to this thread's outputs. The barriers make the
// fills visible, then keep the next fill from overwriting tiles that other threads still read.
fn tile_mma(acc: ptr<function, array<vec4<f32>, 16>>, lid: u32) {
  let tx = lid % 8u;
  let ty = lid / 8u;
  workgroupBarrier();
  for (var kk = 0u; kk < TK; kk++) {
    let a0 = As[kk * 16u + ty * 2u];
    let a1 = As[kk * 16u + ty * 2u + 1u];
    let b0 = Bs[kk * 16u + tx * 2u];
    let b1 = Bs[kk * 16u + tx * 2u + 1u];
    for (var i = 0u; i < 4u; i++) {
      (*acc)[i * 2u] = fma(vec4<f32>(a0[i]), b0, (*acc)[i * 2u]);
      (*acc)[i * 2u + 1u] = fma(vec4<f32>(a0[i]), b1, (*acc)[i * 2u + 1u]);
      (*acc)[(i + 4u) * 2u] = fma(vec4<f32>(a1[i]), b0, (*acc)[(i + 4u) * 2u]);
      (*acc)[(i + 4u) * 2u + 1u] = fma(vec4<f32>(a1[i]), b1, (*acc)[(i + 4u) * 2u + 1u]);
    }
  }
  workgroupBarrier();
}

// Stores this thread's outputs of the tile at (r0, c0) of a [rows, cols] output, dropping those
// past its edges.
fn tile_store(acc: ptr<function, array<vec4<f32>, 16>>, lid: u32, r0: u32, c0: u32, rows: u32, cols: u32) {
  let tx = lid % 8u;
  let ty = lid / 8u;
  for (var i = 0u; i < 8u; i++) {
    let r = r0 + ty * 8u + i;
    if (r >= rows) { break; }
    for (var j = 0u; j < 8u; j++) {
      let c = c0 + tx * 8u + j;
      if (c < cols) { store(r * cols + c, (*acc)[i * 2u + j / 4u][j % 4u]); }
    }
  }
}
