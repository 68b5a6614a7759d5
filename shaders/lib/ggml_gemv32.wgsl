// ggml_gemv32: a decode-sized (M <= 8) forward for the K-quants (Q4_K, Q5_K, Q6_K), included after
// lib/ggml_body.wgsl by shaders/ggml_q4_k.wgsl, q5_k and q6_k. As ggml_body's gemv (same grid,
// workgroup, columns per thread, reduction), but each lane takes 32 consecutive elements per step,
// so their scales (Q4_K / Q5_K: get_scale_min_k4 and the block's d / dmin; Q6_K: two i8 scales
// times d) are decoded once per 32 elements, not once per 8. The includer declares
//   fn head32(o: u32, j: u32) -> vec2<f32>        the scales of the 32 elements from j (j % 32 == 0)
//   fn dq8h(o: u32, j: u32, h: vec2<f32>) -> W8   elements j .. j+7 given that head
// (Measured on llvmpipe, M = 1: 30-50% faster than gemv for the K-quants; for the 32-element
// types, whose header is one f16, gemv is as fast or faster.)

@compute @workgroup_size(64)
fn gemv32(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g0 = (wid.x + wid.y * nwg.x) * 32u;
  if (g0 >= p.N) { return; } // uniform per workgroup
  let lane = lid % 8u;       // lane takes elements 32 * lane .. +31 of each 256
  let c0 = (lid / 8u) * 4u;  // this thread's 4 columns: g0 + c0 .. +3
  var rows: array<u32, 4>;   // columns past N redo column N-1, dropped at the store
  for (var i = 0u; i < 4u; i++) { rows[i] = min(g0 + c0 + i, p.N - 1u); }
  var acc: array<vec4<f32>, 8>; // acc[m][i]
  var off: array<u32, 4>;
  var head: array<vec2<f32>, 4>;
  for (var k = lane * 32u; k < p.K; k += 256u) {
    let b = k / BLOCK;
    let j = k - b * BLOCK;
    for (var i = 0u; i < 4u; i++) {
      off[i] = (rows[i] * (p.K / BLOCK) + b) * BLOCK_BYTES;
      head[i] = head32(off[i], j);
    }
    for (var u = 0u; u < 32u; u += 8u) {
      var w: array<W8, 4>;
      for (var i = 0u; i < 4u; i++) { w[i] = dq8h(off[i], j + u, head[i]); }
      accumulate8(&acc, &w, k + u);
    }
  }
  gemv_reduce(&acc, lid, g0);
}
