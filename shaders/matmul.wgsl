// matmul: C[M,N] = alpha * op(A) · op(B)  (+ C when accumulate != 0)
//   op(A) = A stored [M,K] (row-major), or A stored [K,M] when TRANS_A;
//   op(B) = B stored [K,N],             or B stored [N,K] when TRANS_B (linear layer y = x·Wᵀ).
// Bindings:
//   a: op(A) source, read from element p.aOff on (f32)
//   b: op(B) source, read from element p.bOff on (f32)
//   c: [M,N] f32 (read_write; read only when accumulate)
//   p: {M, N, K, aOff, bOff, accumulate: u32, alpha: f32}
// Entry points (layout chosen by the override constants TRANS_A / TRANS_B, so one source serves
// forward and both backward layouts):
//   tiled  : 64x64 output tile per workgroup of 64 threads, 8x8 outputs per thread, K in steps of
//            16 through workgroup memory. Grid [ceil(N/64), ceil(M/64)]. Ragged edges are zero-padded
//            on load and masked on store.
//   gemv_t : small M (decode), TRANS_B. 32 output columns per workgroup: 8 groups of 8 threads, each
//            thread 4 columns; the 8 threads of a group stride over K (adjacent threads read
//            adjacent weights), then the 8 partial sums per output are added in workgroup memory.
//            Grid: ceil(N/32) groups, split over x/y.
//   gemv_n : small M, B stored [K,N]. One output column per thread, all ROWS rows at once
//            (adjacent threads read adjacent columns). Grid: ceil(N/64) groups, split over x/y.
// ROWS (override, 1..8) is M for the gemv entry points.
// Accumulation is in f32.

struct Params { M: u32, N: u32, K: u32, aOff: u32, bOff: u32, accumulate: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ROWS: u32 = 1u;

// op(A)[m,k] and op(B)[k,n]; callers keep indices in range.
fn loadA(m: u32, k: u32) -> f32 {
  if (TRANS_A) { return a[p.aOff + k * p.M + m]; }
  return a[p.aOff + m * p.K + k];
}
fn loadB(k: u32, n: u32) -> f32 {
  if (TRANS_B) { return b[p.bOff + n * p.K + k]; }
  return b[p.bOff + k * p.N + n];
}

//#include "lib/matmul_body.wgsl"
