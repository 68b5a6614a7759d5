// copy_block: a 2-D block copy between row-major matrices (slicing and concatenating rows or
// columns, prepending virtual-token rows to each sequence), optionally accumulating (the backward
// of a slice adds into a gradient).
//   dst[(dr0 + r) * dstCols + dc0 + c] (+)= src[(sr0 + r) * srcCols + sc0 + c],  r < rows, c < cols
// Bindings: src (read), dst (read_write), p: {rows, cols, srcCols, sr0, sc0, dstCols, dr0, dc0, acc}.
// One thread per copied element; grid: grid1d(rows * cols, 64).
struct Params { rows: u32, cols: u32, srcCols: u32, sr0: u32, sc0: u32, dstCols: u32, dr0: u32, dc0: u32, acc: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.rows * p.cols) { return; }
  let r = i / p.cols;
  let c = i % p.cols;
  let v = src[(p.sr0 + r) * p.srcCols + p.sc0 + c];
  let o = (p.dr0 + r) * p.dstCols + p.dc0 + c;
  if (p.acc != 0u) { dst[o] = dst[o] + v; } else { dst[o] = v; }
}
