// ggml_gemv32: a decode-sized (M <= 8) forward for the K-quants with 6-bit packed scales (Q4_K,
// Q5_K), included after lib/ggml_body.wgsl by shaders/ggml_q4_k.wgsl and ggml_q5_k.wgsl. As
// ggml_body's gemv (same grid, workgroup, reduction), but lanes stride over K 32 elements at a
// time: one sub-block, whose scale and min (get_scale_min_k4) and the block's d / dmin are decoded
// once instead of once per 8 elements. The includer declares
//   fn dq32(o: u32, j: u32) -> array<W8, 4>   elements j .. j+31 (j % 32 == 0) of the block at byte offset o.
// (Measured on llvmpipe: faster than gemv for Q4_K / Q5_K, slower for the types whose header is a
// single f16, where gemv's 8-element interleave of the lanes reads memory better.)

// W[n, k .. k+31] (k % 32 == 0, k < K, K % 32 == 0)
fn unit32(n: u32, k: u32) -> array<W8, 4> {
  let b = k / BLOCK;
  return dq32((n * (p.K / BLOCK) + b) * BLOCK_BYTES, k - b * BLOCK);
}

@compute @workgroup_size(64)
fn gemv32(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g0 = (wid.x + wid.y * nwg.x) * 32u;
  if (g0 >= p.N) { return; } // uniform per workgroup
  let lane = lid % 8u;       // lanes stride over K 32 elements at a time
  let c0 = (lid / 8u) * 4u;  // this thread's 4 columns: g0 + c0 .. +3
  var acc: array<vec4<f32>, 8>; // acc[m][i]
  for (var k = lane * 32u; k < p.K; k += 256u) {
    for (var i = 0u; i < 4u; i++) {
      let w = unit32(min(g0 + c0 + i, p.N - 1u), k); // columns past N redo column N-1, dropped at the store
      for (var m = 0u; m < ROWS; m++) {
        var s = 0.0;
        for (var u = 0u; u < 4u; u++) {
          let o = m * p.K + k + u * 8u;
          s += dot(vec4<f32>(act(o), act(o + 1u), act(o + 2u), act(o + 3u)), w[u].lo) +
            dot(vec4<f32>(act(o + 4u), act(o + 5u), act(o + 6u), act(o + 7u)), w[u].hi);
        }
        acc[m][i] += s;
      }
    }
  }
  gemv_reduce(&acc, lid, g0);
}
