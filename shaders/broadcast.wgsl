// broadcast: ops between a [rows, cols] matrix and a per-column (or per-row) vector, their reductions, and row
// norms — what PEFT's vector methods need: (IA)³ scaling, bias terms, DoRA magnitudes.
// Bindings: a: [rows, cols] f32 (read); v: [cols] f32 (read; the second operand b [rows, cols]
//           for col_sum with a product, the divisor [n] for div); out: f32 (read_write);
//           p: {rows, cols, flags}. flags bit 0: col_sum multiplies by v (b); bit 1: out += result.
// Entry points (grids split over x/y when a dimension exceeds 65535 groups):
//   mul_cols : out[r, c] = a[r, c] * v[c]                 (one thread per element)
//   add_cols : out[r, c] = a[r, c] + v[c]                 (one thread per element)
//   mul_rows : out[r, c] = a[r, c] * v[r]                 (one thread per element)
//   col_sum  : out[c] (+)= sum_r a[r, c] (* b[r, c])      (one thread per column, rows in order)
//   row_norm : out[r] = sqrt(sum_c a[r, c]^2)             (one workgroup of 64 per row, fixed-order tree)
//   div      : out[i] = a[i] / v[i], i < cols             (elementwise over cols values)
struct Params { rows: u32, cols: u32, flags: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * 64u; }

@compute @workgroup_size(64)
fn mul_cols(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i < p.rows * p.cols) { out[i] = a[i] * v[i % p.cols]; }
}

@compute @workgroup_size(64)
fn add_cols(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i < p.rows * p.cols) { out[i] = a[i] + v[i % p.cols]; }
}

@compute @workgroup_size(64)
fn mul_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i < p.rows * p.cols) { out[i] = a[i] * v[i / p.cols]; }
}

@compute @workgroup_size(64)
fn col_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = flat(gid, nwg);
  if (c >= p.cols) { return; }
  var s = 0.0;
  if ((p.flags & 1u) != 0u) {
    for (var r = 0u; r < p.rows; r++) { s += a[r * p.cols + c] * v[r * p.cols + c]; }
  } else {
    for (var r = 0u; r < p.rows; r++) { s += a[r * p.cols + c]; }
  }
  if ((p.flags & 2u) != 0u) { out[c] += s; } else { out[c] = s; }
}

const WG: u32 = 64u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn row_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  var ss = 0.0;
  for (var c = tid; c < p.cols; c += WG) {
    let x = a[row * p.cols + c];
    ss += x * x;
  }
  partial[tid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) { partial[tid] += partial[tid + s]; }
    workgroupBarrier();
  }
  if (tid == 0u) { out[row] = sqrt(partial[0]); }
}

@compute @workgroup_size(64)
fn div(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i < p.cols) { out[i] = a[i] / v[i]; }
}
