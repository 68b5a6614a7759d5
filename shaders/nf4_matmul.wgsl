// nf4_matmul: matmuls against a 4-bit (NF4/FP4, bitsandbytes layout) weight W [N, K] that is
// dequantized on the fly from its packed codes and block scales; no f32 copy of W exists.
//
//   forward / gemv:  y[m, n] = alpha * sum_k a[m, k] * W[n, k]  (+ y[m, n] if accumulate)
//                    a = x [M, K], y [M, N]           (y = x · Wᵀ, a linear layer)
//   backward:        y[m, k] = alpha * sum_n a[m, n] * W[n, k]  (+ y[m, k] if accumulate)
//                    a = dy [M, N], y = dx [M, K]     (dx = dy · W, through the frozen base)
//
// W element e = n*K + k (row-major, blocks may straddle rows):
//   q     = nibble e of codes (byte e/2, high nibble when e is even)
//   scale = absmax[e / blocksize]                                   (f32 bits), or when nested:
//         = dmap[qa] * nested_absmax[b / 256] + offset, qa = byte b of absmax   (double quant)
//   W[e]  = code[q] * scale
// Bindings:
//   a:      array<f32>  [M, K] or [M, N]      (read)
//   codes:  array<u32>  packed 4-bit codes, ceil(N*K/2) bytes   (read)
//   absmax: array<u32>  f32 per block, or u8 codes per block when nested (read)
//   tables: array<f32>  shared tables: code map (16) at code_off; for nested weights the
//                       256-entry map at nmap_off, nested absmax at nabs_off, offset at off_idx
//   y:      array<f32>  output (read_write)
// Workgroups: forward/backward 16x16 output tiles, 128 threads (16 x 8, two outputs each);
// gemv (forward with M <= 8): one workgroup of 64 threads per output column n.

struct Params {
  M: u32, N: u32, K: u32, blocksize: u32,
  nested: u32, code_off: u32, nmap_off: u32, nabs_off: u32,
  off_idx: u32, accumulate: u32, alpha: f32, pad: u32,
}
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> absmax: array<u32>;
@group(0) @binding(3) var<storage, read> tables: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

fn block_scale(b: u32) -> f32 {
  if (p.nested == 0u) { return bitcast<f32>(absmax[b]); }
  let qa = (absmax[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
  return tables[p.nmap_off + qa] * tables[p.nabs_off + b / 256u] + tables[p.off_idx];
}

fn w_at(e: u32) -> f32 {
  let byte = (codes[e >> 3u] >> (((e >> 1u) & 3u) * 8u)) & 0xffu;
  let q = select(byte & 15u, byte >> 4u, (e & 1u) == 0u);
  return tables[p.code_off + q] * block_scale(e / p.blocksize);
}

fn store(i: u32, v: f32) {
  var r = p.alpha * v;
  if (p.accumulate != 0u) { r = r + y[i]; }
  y[i] = r;
}

const T: u32 = 16u;   // output tile edge
const TR: u32 = 32u;  // reduction chunk
var<workgroup> as_: array<array<f32, 33>, 16>;  // a tile [m][r]
var<workgroup> ws: array<array<f32, 33>, 16>;   // W tile [out col][r]

@compute @workgroup_size(16, 8)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n0 = wg.x * T;
  let m0 = wg.y * T;
  let t = lid.y * 16u + lid.x;
  var acc0 = 0.0;
  var acc1 = 0.0;
  for (var k0 = 0u; k0 < p.K; k0 += TR) {
    for (var r = 0u; r < 4u; r++) {
      let l = t + r * 128u;
      let row = l / TR;
      let kk = l % TR;
      let k = k0 + kk;
      let m = m0 + row;
      let n = n0 + row;
      as_[row][kk] = select(0.0, a[m * p.K + k], m < p.M && k < p.K);
      ws[row][kk] = select(0.0, w_at(n * p.K + k), n < p.N && k < p.K);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TR; kk++) {
      let w = ws[lid.x][kk];
      acc0 += as_[lid.y][kk] * w;
      acc1 += as_[lid.y + 8u][kk] * w;
    }
    workgroupBarrier();
  }
  let n = n0 + lid.x;
  if (n < p.N) {
    let m = m0 + lid.y;
    if (m < p.M) { store(m * p.N + n, acc0); }
    if (m + 8u < p.M) { store((m + 8u) * p.N + n, acc1); }
  }
}

@compute @workgroup_size(16, 8)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let k0 = wg.x * T;
  let m0 = wg.y * T;
  let t = lid.y * 16u + lid.x;
  var acc0 = 0.0;
  var acc1 = 0.0;
  for (var n0 = 0u; n0 < p.N; n0 += TR) {
    for (var r = 0u; r < 4u; r++) {
      let l = t + r * 128u;
      // a tile: row-major [m][n], consecutive threads along n
      let am = l / TR;
      let an = l % TR;
      let m = m0 + am;
      let na = n0 + an;
      as_[am][an] = select(0.0, a[m * p.N + na], m < p.M && na < p.N);
      // W tile: consecutive threads along k (consecutive codes)
      let wn = l / T;
      let wk = l % T;
      let n = n0 + wn;
      let k = k0 + wk;
      ws[wk][wn] = select(0.0, w_at(n * p.K + k), n < p.N && k < p.K);
    }
    workgroupBarrier();
    for (var nn = 0u; nn < TR; nn++) {
      let w = ws[lid.x][nn];
      acc0 += as_[lid.y][nn] * w;
      acc1 += as_[lid.y + 8u][nn] * w;
    }
    workgroupBarrier();
  }
  let k = k0 + lid.x;
  if (k < p.K) {
    let m = m0 + lid.y;
    if (m < p.M) { store(m * p.K + k, acc0); }
    if (m + 8u < p.M) { store((m + 8u) * p.K + k, acc1); }
  }
}

const GV: u32 = 64u;
var<workgroup> red: array<array<f32, 64>, 8>;

// Decode-sized forward (M <= 8): each W element is dequantized once and used for every row of a.
@compute @workgroup_size(64)
fn gemv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = wg.x + wg.y * nwg.x;
  if (n >= p.N) { return; }  // uniform per workgroup
  var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
  for (var k = lid.x; k < p.K; k += GV) {
    let w = w_at(n * p.K + k);
    for (var m = 0u; m < p.M; m++) { acc[m] += a[m * p.K + k] * w; }
  }
  for (var m = 0u; m < 8u; m++) { red[m][lid.x] = acc[m]; }
  workgroupBarrier();
  for (var s = GV / 2u; s > 0u; s = s >> 1u) {
    if (lid.x < s) {
      for (var m = 0u; m < 8u; m++) { red[m][lid.x] += red[m][lid.x + s]; }
    }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    for (var m = 0u; m < p.M; m++) { store(m * p.N + n, red[m][0]); }
  }
}
