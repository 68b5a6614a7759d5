// paged attention: causal attention of a ragged batch of query rows over a paged KV cache.
// The cache is a pool of blocks of `blockSize` rows each (one pool per layer for K and one for V);
// a sequence's position j lives in cache row slot(s, j) = table[s][j / blockSize] * blockSize + j % blockSize.
// Query row r belongs to sequence seq[r] at position pos[r] and sees that sequence's keys 0..pos[r]
// (with a sliding window, window > 0: only keys j with pos[r] - window < j <= pos[r], as attention.wgsl):
//   s_j = (q[r, h] . k[slot(seq[r], j), g]) * scale,  out[r, h] = sum_j softmax(s)_j * v[slot(seq[r], j), g]
// with g = h / (Hq / Hkv) (grouped-query heads). Rows of a prefill segment and decode rows of other
// sequences mix freely in one dispatch (vLLM's flattened batch).
// rowinfo (u32): [2*R] (seq, pos) per row, then the block tables at tableOffset: [nSeqs, maxBlocks].
// Entry points:
//   main      one 64-thread workgroup per (row, head): the online softmax of lib/online_attention.wgsl
//             (chunks of 64 keys, running max and sum), keys read through the block table.
//             Bindings q: [R, Hq*D], kc, vc: [poolRows, Hkv*D], out: [R, Hq*D]. Grid: R*Hq workgroups.
//   write_kv  kc[slot(seq[r], pos[r])] = knew[r], vc[...] = vnew[r]: one thread per (row, column).
//             Bindings knew, vnew: [R, Hkv*D]. Grid: grid1d(R*Hkv*D, 64).
// p: {R, Hq, Hkv, D, blockSize, maxBlocks, tableOffset, scale: f32, window}.
struct Params { R: u32, Hq: u32, Hkv: u32, D: u32, blockSize: u32, maxBlocks: u32, tableOffset: u32, scale: f32, window: u32 }
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> kc: array<f32>;
@group(0) @binding(2) var<storage, read_write> vc: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> rowinfo: array<u32>;
@group(0) @binding(5) var<storage, read> knew: array<f32>;
@group(0) @binding(6) var<storage, read> vnew: array<f32>;
@group(0) @binding(7) var<uniform> p: Params;

//#include "lib/online_attention.wgsl"

fn slot(s: u32, j: u32) -> u32 {
  return rowinfo[p.tableOffset + s * p.maxBlocks + j / p.blockSize] * p.blockSize + j % p.blockSize;
}
fn kv_row(s: u32, j: u32) -> u32 { return slot(s, j); }
fn key_at(i: u32) -> f32 { return kc[i]; }
fn value_at(i: u32) -> f32 { return vc[i]; }

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let idx = wid.x + wid.y * nwg.x;
  if (idx >= p.R * p.Hq) { return; }
  let h = idx % p.Hq;
  let row = idx / p.Hq;
  let s = rowinfo[2u * row];
  let last = rowinfo[2u * row + 1u] + 1u;
  let first = select(0u, last - p.window, p.window > 0u && last > p.window);
  let g = h / (p.Hq / p.Hkv);
  let D = p.D;
  let qoff = row * p.Hq * D + h * D;
  for (var d = tid; d < D; d += WG) { qs[d] = q[qoff + d] * p.scale; }
  workgroupBarrier();

  attend(tid, s, first, last, p.Hkv * D, g * D, D, qoff);
}

@compute @workgroup_size(64)
fn write_kv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let kvW = p.Hkv * p.D;
  let idx = gid.x + gid.y * nwg.x * 64u;
  if (idx >= p.R * kvW) { return; }
  let row = idx / kvW;
  let c = idx % kvW;
  let dst = slot(rowinfo[2u * row], rowinfo[2u * row + 1u]) * kvW + c;
  kc[dst] = knew[idx];
  vc[dst] = vnew[idx];
}
