// ggml_body: matmuls and embedding lookups that read a weight W [N, K] stored in a ggml block
// format (the GGUF bytes as they are, in u32 words) and dequantize it on the fly; no f32 copy of W
// exists. Shared by shaders/ggml_<type>.wgsl, which each declare
//   const BLOCK: u32        elements per block (32 or 256; BF16: 8, a kernel-sized group)
//   const BLOCK_BYTES: u32  bytes per block (18, 20, 22, 24, 34, 144, 176, 210; BF16 16)
//   fn dq8(o: u32, j: u32) -> W8   elements j .. j+7 (j % 8 == 0) of the block at byte offset o
// Rows hold whole blocks (K % BLOCK == 0), so W[n, k] is element k % BLOCK of block
// n * (K / BLOCK) + k / BLOCK, at byte offset (that block) * BLOCK_BYTES. Blocks need not start on
// a word (Q4_0's 18 bytes): fields are read with byte offsets (rd_u8, rd_u32, rd_f16 below).
//
//   tiled_fwd / gemv:     y[m, n] = alpha * sum_k a[m, k] * W[n, k]  (+ y if accumulate)   y = x · Wᵀ
//   tiled_bwd / gemv_bwd: y[m, k] = alpha * sum_n a[m, n] * W[n, k]  (+ y if accumulate)   dx = dy · W
//   embed:                y[i, k] = alpha * W[ids[i], k]  (+ y if accumulate); 0 when ids[i] >= N
// Bindings:
//   a:   array<f32>  x [M, K] or dy [M, N]   (read)
//   wq:  array<u32>  the ggml blocks of W, N * K / BLOCK * BLOCK_BYTES bytes   (read)
//   ids: array<u32>  embed: token ids [M]   (read)
//   y:   array<f32>  output [M, N], [M, K] or embed [M, K]   (read_write)
// Entry points:
//   tiled_fwd / tiled_bwd (M > 8): lib/dequant_tiles.wgsl; decode16 = two dq8.
//   gemv (M <= 8): 32 output columns per workgroup (as the f32 gemv_t and NF4 gemv8): 8 groups of
//     8 lanes, each thread 4 columns; lanes stride over K 8 elements (one dq8) at a time; partial
//     sums added by lib/gemv_reduce.wgsl. ROWS (override) = M. Grid: ceil(N/32) groups over x/y.
//   gemv32 (the K-quants: lib/ggml_gemv32.wgsl): gemv with the scales decoded once per 32 elements.
//   gemv_bwd (M <= 8): 64 output columns (8 groups of 8) per workgroup, 8 lanes per group striding
//     over N, each decoding W[n, 8 columns] per row n. Grid: ceil(K/64) groups over x/y.
//   embed: one thread per 8 output elements. Grid: ceil(M*K/8 / 64) groups over x/y.

struct Params { M: u32, N: u32, K: u32, accumulate: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> wq: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

fn act(i: u32) -> f32 { return a[i]; }

//#include "f16.wgsl"

/** Eight dequantized elements, in order: lo = 0..3, hi = 4..7. */
struct W8 { lo: vec4<f32>, hi: vec4<f32> }

const BYTE_SHIFTS = vec4<u32>(0u, 8u, 16u, 24u);

// byte o of the weight bytes
fn rd_u8(o: u32) -> u32 { return (wq[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu; }
// the little-endian u32 at any byte offset o (two words when o is not a multiple of 4)
fn rd_u32(o: u32) -> u32 {
  let s = (o & 3u) * 8u;
  let lo = wq[o >> 2u];
  if (s == 0u) { return lo; }
  return (lo >> s) | (wq[(o >> 2u) + 1u] << (32u - s));
}
// the f16 at an even byte offset o, exactly widened (subnormal scales included)
fn rd_f16(o: u32) -> f32 { return bitcast<f32>(f16_to_f32_bits(wq[o >> 2u] >> ((o & 2u) * 8u))); }
// the 4 bytes of w as signed integers
fn i8x4(w: u32) -> vec4<f32> { return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u)); }
// the low (sh = 0) or high (sh = 4) nibbles of the 4 bytes of w
fn nib4(w: u32, sh: u32) -> vec4<u32> { return (vec4<u32>(w) >> (BYTE_SHIFTS + sh)) & vec4<u32>(15u); }
// bit b of each of the 4 bytes of w, times 16 (a 5th quant bit)
fn bit4(w: u32, b: u32) -> vec4<u32> { return ((vec4<u32>(w) >> (BYTE_SHIFTS + b)) & vec4<u32>(1u)) << vec4<u32>(4u); }

// W[n, k .. k+7] (k % 8 == 0, k < K)
fn unit(n: u32, k: u32) -> W8 {
  let b = k / BLOCK;
  return dq8((n * (p.K / BLOCK) + b) * BLOCK_BYTES, k - b * BLOCK);
}

fn prepare_tile(lid: u32) {}

fn decode16(n: u32, k0: u32) -> array<f32, 16> {
  var out: array<f32, 16>;
  if (n >= p.N || k0 >= p.K) { return out; }
  let u0 = unit(n, k0);
  var u1 = W8(vec4<f32>(0.0), vec4<f32>(0.0));
  if (k0 + 8u < p.K) { u1 = unit(n, k0 + 8u); } // K % 16 == 8 (BF16)
  for (var i = 0u; i < 4u; i++) {
    out[i] = u0.lo[i];
    out[4u + i] = u0.hi[i];
    out[8u + i] = u1.lo[i];
    out[12u + i] = u1.hi[i];
  }
  return out;
}

//#include "dequant_tiles.wgsl"

override ROWS: u32 = 1u;

// acc[m][i] += the 8 activations of row m at column k · the 8 dequantized weights w[i] (i < 4
// output columns): the inner step of both gemv bodies (here and lib/ggml_gemv32.wgsl).
fn accumulate8(acc: ptr<function, array<vec4<f32>, 8>>, w: ptr<function, array<W8, 4>>, k: u32) {
  for (var m = 0u; m < ROWS; m++) {
    let o = m * p.K + k;
    let al = vec4<f32>(act(o), act(o + 1u), act(o + 2u), act(o + 3u));
    let ah = vec4<f32>(act(o + 4u), act(o + 5u), act(o + 6u), act(o + 7u));
    (*acc)[m] += vec4<f32>(
      dot(al, (*w)[0].lo) + dot(ah, (*w)[0].hi), dot(al, (*w)[1].lo) + dot(ah, (*w)[1].hi),
      dot(al, (*w)[2].lo) + dot(ah, (*w)[2].hi), dot(al, (*w)[3].lo) + dot(ah, (*w)[3].hi),
    );
  }
}
//#include "gemv_reduce.wgsl"

@compute @workgroup_size(64)
fn gemv(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g0 = (wid.x + wid.y * nwg.x) * 32u;
  if (g0 >= p.N) { return; } // uniform per workgroup
  let lane = lid % 8u;       // lanes stride over K 8 elements at a time
  let c0 = (lid / 8u) * 4u;  // this thread's 4 columns: g0 + c0 .. +3
  var rows: array<u32, 4>;   // columns past N redo column N-1, dropped at the store
  for (var i = 0u; i < 4u; i++) { rows[i] = min(g0 + c0 + i, p.N - 1u); }
  var acc: array<vec4<f32>, 8>; // acc[m][i]
  for (var k = lane * 8u; k < p.K; k += 64u) {
    var w: array<W8, 4>;
    for (var i = 0u; i < 4u; i++) { w[i] = unit(rows[i], k); }
    accumulate8(&acc, &w, k);
  }
  gemv_reduce(&acc, lid, g0);
}

@compute @workgroup_size(64)
fn gemv_bwd(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let groups = p.K / 8u;
  let g0 = (wid.x + wid.y * nwg.x) * 8u; // first 8-column group
  if (g0 >= groups) { return; } // uniform per workgroup
  let lane = lid % 8u;
  let g = min(g0 + lid / 8u, groups - 1u); // groups past the end redo the last, dropped at the store
  var acc: array<vec4<f32>, 16>; // acc[m*2 + h]: row m, columns g*8 + h*4 .. +3
  for (var n = lane; n < p.N; n += 8u) {
    let w = unit(n, g * 8u);
    for (var m = 0u; m < ROWS; m++) {
      let d = vec4<f32>(act(m * p.N + n));
      acc[m * 2u] = fma(d, w.lo, acc[m * 2u]);
      acc[m * 2u + 1u] = fma(d, w.hi, acc[m * 2u + 1u]);
    }
  }
  gemv_bwd_reduce(&acc, lid, g0 * 8u);
}

@compute @workgroup_size(64)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = gid.x + gid.y * nwg.x * 64u;
  let groups = p.K / 8u;
  if (t >= p.M * groups) { return; }
  let i = t / groups;
  let k = (t % groups) * 8u;
  let id = ids[i];
  var w = W8(vec4<f32>(0.0), vec4<f32>(0.0));
  if (id < p.N) { w = unit(id, k); }
  for (var j = 0u; j < 4u; j++) {
    store(i * p.K + k + j, w.lo[j]);
    store(i * p.K + k + 4u + j, w.hi[j]);
  }
}
