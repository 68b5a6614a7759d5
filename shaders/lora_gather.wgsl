// lora_gather: LoRA deltas of several adapters over the rows of one batch in two dispatches
// (Punica's BGMV for decode rows, SGMV for prefill segments: one entry covers a run of rows).
// Every adapter's A [r, K] and B [N, r] live in one f32 bank at their own offsets, so adapters of
// different ranks share a dispatch without padding (S-LoRA's unified memory).
// Entry e (7 u32 in `entries`): row0, rows, aOff, bOff, rank, scale (f32 bits), vOff, where vOff is
// the running sum of rows*rank (the entry's place in the intermediate v). A row may be covered by
// several entries (weighted combinations of adapters); rows covered by none are left unchanged.
//   shrink  v[vOff + i*rank + j] = sum_k x[row0 + i, k] * A[j, k]          one thread per v element
//   expand  y[row, n] += sum_{e covers row} scale_e * sum_j v[e, row, j] * B[n, j]   one thread per (row, n)
// Entries are visited in order, so the result is deterministic (no atomics).
// Bindings: x: [R, K] f32; y: [R, N] f32 (read_write); bank: f32; v: [total] f32;
//           entries: u32, this dispatch's E entries from entry eBase on (one upload serves every site of a pass);
//           p: {E, K, N, R, total, eBase}. Grids: grid1d(total, 64) and grid1d(R*N, 64).
struct Params { E: u32, K: u32, N: u32, R: u32, total: u32, eBase: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> bank: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> entries: array<u32>;
@group(0) @binding(5) var<uniform> p: Params;

const F: u32 = 7u;

@compute @workgroup_size(64)
fn shrink(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 64u;
  if (idx >= p.total) { return; }
  // The entry holding idx: the last one whose vOff <= idx (binary search; vOff ascends).
  var lo = 0u;
  var hi = p.E;
  while (hi - lo > 1u) {
    let mid = (lo + hi) / 2u;
    if (entries[(p.eBase + mid) * F + 6u] <= idx) { lo = mid; } else { hi = mid; }
  }
  let e = (p.eBase + lo) * F;
  let rank = entries[e + 4u];
  let loc = idx - entries[e + 6u];
  let row = entries[e] + loc / rank;
  let a = entries[e + 2u] + (loc % rank) * p.K;
  var s = 0.0;
  for (var k = 0u; k < p.K; k++) { s += x[row * p.K + k] * bank[a + k]; }
  v[idx] = s;
}

@compute @workgroup_size(64)
fn expand(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 64u;
  if (idx >= p.R * p.N) { return; }
  let row = idx / p.N;
  let n = idx % p.N;
  var acc = y[idx];
  for (var i = 0u; i < p.E; i++) {
    let e = (p.eBase + i) * F;
    let row0 = entries[e];
    if (row < row0 || row >= row0 + entries[e + 1u]) { continue; }
    let rank = entries[e + 4u];
    let vo = entries[e + 6u] + (row - row0) * rank;
    let b = entries[e + 3u] + n * rank;
    var s = 0.0;
    for (var j = 0u; j < rank; j++) { s += v[vo + j] * bank[b + j]; }
    acc += bitcast<f32>(entries[e + 5u]) * s;
  }
  y[idx] = acc;
}
