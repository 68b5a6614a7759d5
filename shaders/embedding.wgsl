// embedding: token-embedding lookup and its deterministic backward (no float atomics).
// Bindings:
//   ids:  [N] u32 token ids (read_write only so the forward may bind `link` to the same buffer)
//   link: [N] u32 scratch for the backward: bit 31 = "first occurrence of its id",
//         bits 0..30 = index of the next row with the same id (N when none)
//   src:  forward: table [V,C]; backward: dy [N,C]
//   dst:  forward: out [N,C];   backward: dTable [V,C], added to
//   p: {N, C, V}
// Entry points (1D index i = gid.x + gid.y * groups in x * 64):
//   gather      : dst[n,c] = src[ids[n],c]; rows with ids[n] >= V read as zeros.
//   link_rows   : one thread per row n builds link[n] by scanning ids (O(N²) compares of u32s,
//                 cheap beside the O(N·C) float work).
//   scatter_add : one thread per (n,c) with n the first occurrence of its id walks the chain of
//                 rows with that id in increasing order and adds the sum into dst[id,c]: one writer
//                 per output, fixed summation order, so the result is bitwise reproducible.
//                 ids >= V are skipped.
struct Params { N: u32, C: u32, V: u32 }
@group(0) @binding(0) var<storage, read_write> ids: array<u32>;
@group(0) @binding(1) var<storage, read_write> link: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const HEAD = 0x80000000u;

@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.N * p.C) { return; }
  let n = i / p.C;
  let c = i % p.C;
  let id = ids[n];
  dst[i] = select(0.0, src[min(id, p.V - 1u) * p.C + c], id < p.V);
}

@compute @workgroup_size(64)
fn link_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let n = gid.x + gid.y * nwg.x * 64u;
  if (n >= p.N) { return; }
  let id = ids[n];
  var head = HEAD;
  for (var m = 0u; m < n; m++) { if (ids[m] == id) { head = 0u; break; } }
  var next = p.N;
  for (var m = n + 1u; m < p.N; m++) { if (ids[m] == id) { next = m; break; } }
  link[n] = head | next;
}

@compute @workgroup_size(64)
fn scatter_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.N * p.C) { return; }
  let n = i / p.C;
  let c = i % p.C;
  let l = link[n];
  let id = ids[n];
  if ((l & HEAD) == 0u || id >= p.V) { return; }
  var s = src[i];
  var j = l & ~HEAD;
  while (j < p.N) {
    s += src[j * p.C + c];
    j = link[j] & ~HEAD;
  }
  dst[id * p.C + c] += s;
}
