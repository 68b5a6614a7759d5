// nf4_body: the 4-bit matmul shared by nf4_matmul.wgsl (f32 activations) and
// nf4_matmul_f16.wgsl (f16 activations, computeDtype "f16"). The including file declares the
// binding `a` (@binding(0)) and `fn act(i: u32) -> f32`, element i of a widened to f32; this file
// holds Params, the other bindings, the dequantization and the entry points (documented in
// shaders/nf4_matmul.wgsl). The tiled entry points (and `store`) are lib/dequant_tiles.wgsl's,
// shared with the ggml block formats; their tiles and tile product are lib/tile_mma.wgsl's.

struct Params {
  M: u32, N: u32, K: u32, blocksize: u32,
  nested: u32, code_off: u32, nmap_off: u32, nabs_off: u32,
  off_idx: u32, accumulate: u32, alpha: f32, bshift: u32,
}
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> absmax: array<u32>;
@group(0) @binding(3) var<storage, read> tables: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

fn block_scale(b: u32) -> f32 {
  if (p.nested == 0u) { return bitcast<f32>(absmax[b]); }
  let qa = (absmax[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
  return tables[p.nmap_off + qa] * tables[p.nabs_off + (b >> 8u)] + tables[p.off_idx];
}

fn w_at(e: u32) -> f32 {
  let q = (codes[e >> 3u] >> (((e & 7u) ^ 1u) * 4u)) & 15u;
  return tables[p.code_off + q] * block_scale(e >> p.bshift);
}

var<workgroup> ctab: array<f32, 16>;

fn load_ctab(lid: u32) {
  if (lid < 16u) { ctab[lid] = tables[p.code_off + lid]; }
  workgroupBarrier();
}

// W[n, k0 .. k0+15] (zero past the row's end or when n >= N): at most 3 code words and 2 block
// scales (blocksize >= 32 > 16).
fn decode16(n: u32, k0: u32) -> array<f32, 16> {
  var out: array<f32, 16>;
  if (n >= p.N || k0 >= p.K) { return out; }
  let e0 = n * p.K + k0;
  let nvalid = min(16u, p.K - k0);
  let last = e0 + nvalid - 1u;
  let nw = arrayLength(&codes) - 1u;
  let wf = e0 >> 3u;
  let w0 = codes[wf];
  let w1 = codes[min(wf + 1u, nw)];
  let w2 = codes[min(wf + 2u, nw)];
  let b0 = e0 >> p.bshift;
  let s0 = block_scale(b0);
  let s1 = block_scale(last >> p.bshift);
  let jb = ((b0 + 1u) << p.bshift) - e0; // first j in the next block
  for (var j = 0u; j < 16u; j++) {
    let e = e0 + j;
    let wi = (e >> 3u) - wf;
    let word = select(select(w0, w1, wi == 1u), w2, wi == 2u);
    let v = ctab[(word >> (((e & 7u) ^ 1u) * 4u)) & 15u] * select(s0, s1, j >= jb);
    out[j] = select(0.0, v, j < nvalid);
  }
  return out;
}

fn prepare_tile(lid: u32) { load_ctab(lid); }

//#include "dequant_tiles.wgsl"
//#include "gemv_reduce.wgsl"

override ROWS: u32 = 1u;

// 8 codes of a word, in element order, times nothing: (lo = elements 0..3, hi = 4..7)
fn codes_lo(word: u32) -> vec4<f32> {
  return vec4<f32>(ctab[(word >> 4u) & 15u], ctab[word & 15u], ctab[(word >> 12u) & 15u], ctab[(word >> 8u) & 15u]);
}
fn codes_hi(word: u32) -> vec4<f32> {
  return vec4<f32>(ctab[(word >> 20u) & 15u], ctab[(word >> 16u) & 15u], ctab[(word >> 28u) & 15u], ctab[(word >> 24u) & 15u]);
}

// Decode-sized forward (M <= 8) for K % 8 == 0: rows start on a code word, and a word's 8 codes
// share one block scale, applied once to their dot product with x.
@compute @workgroup_size(64)
fn gemv8(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  load_ctab(lid);
  let g0 = (wid.x + wid.y * nwg.x) * 32u;
  if (g0 >= p.N) { return; } // uniform per workgroup
  let lane = lid % 8u;       // lanes stride over K one word at a time
  let c0 = (lid / 8u) * 4u;  // this thread's 4 columns: g0 + c0 .. +3
  let words = p.K / 8u;
  var rows: array<u32, 4>;    // columns past N redo column N-1, dropped at the store
  for (var i = 0u; i < 4u; i++) { rows[i] = min(g0 + c0 + i, p.N - 1u) * words; }
  var acc: array<vec4<f32>, 8>; // acc[m][i]
  for (var s = lane; s < words; s += 8u) {
    var lo: array<vec4<f32>, 4>;
    var hi: array<vec4<f32>, 4>;
    var sc: vec4<f32>;
    for (var i = 0u; i < 4u; i++) {
      let wi = rows[i] + s;
      let word = codes[wi];
      lo[i] = codes_lo(word);
      hi[i] = codes_hi(word);
      sc[i] = block_scale((wi << 3u) >> p.bshift);
    }
    let k = s * 8u;
    for (var m = 0u; m < ROWS; m++) {
      let o = m * p.K + k;
      let al = vec4<f32>(act(o), act(o + 1u), act(o + 2u), act(o + 3u));
      let ah = vec4<f32>(act(o + 4u), act(o + 5u), act(o + 6u), act(o + 7u));
      let d = vec4<f32>(
        dot(al, lo[0]) + dot(ah, hi[0]), dot(al, lo[1]) + dot(ah, hi[1]),
        dot(al, lo[2]) + dot(ah, hi[2]), dot(al, lo[3]) + dot(ah, hi[3]),
      );
      acc[m] = fma(d, sc, acc[m]);
    }
  }
  gemv_reduce(&acc, lid, g0);
}

// Decode-sized backward (M <= 8) for K % 8 == 0: 8 word-columns (64 outputs) per workgroup,
// 8 lanes per word-column striding over N; a thread decodes one word (8 columns, one scale) per n.
@compute @workgroup_size(64)
fn gemv_bwd8(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  load_ctab(lid);
  let words = p.K / 8u;
  let g0 = (wid.x + wid.y * nwg.x) * 8u; // first word-column
  if (g0 >= words) { return; } // uniform per workgroup
  let lane = lid % 8u;
  let c = lid / 8u;
  let wc = min(g0 + c, words - 1u); // word-columns past the end redo the last, dropped at the store
  var acc: array<vec4<f32>, 16>; // acc[m*2 + h]: row m, columns wc*8 + h*4 .. +3
  for (var n = lane; n < p.N; n += 8u) {
    let wi = n * words + wc;
    let word = codes[wi];
    let sc = block_scale((wi << 3u) >> p.bshift);
    let lo = codes_lo(word) * sc;
    let hi = codes_hi(word) * sc;
    for (var m = 0u; m < ROWS; m++) {
      let d = vec4<f32>(act(m * p.N + n));
      acc[m * 2u] = fma(d, lo, acc[m * 2u]);
      acc[m * 2u + 1u] = fma(d, hi, acc[m * 2u + 1u]);
    }
  }
  gemv_bwd_reduce(&acc, lid, g0 * 8u);
}

const GV: u32 = 64u;
var<workgroup> red: array<array<f32, 64>, 8>;

// Decode-sized forward (M <= 8), any K: each W element is dequantized once and used for every
// row of a.
@compute @workgroup_size(64)
fn gemv_any(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = wg.x + wg.y * nwg.x;
  if (n >= p.N) { return; }  // uniform per workgroup
  var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
  for (var k = lid.x; k < p.K; k += GV) {
    let w = w_at(n * p.K + k);
    for (var m = 0u; m < p.M; m++) { acc[m] += act(m * p.K + k) * w; }
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
