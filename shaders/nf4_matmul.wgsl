// nf4_matmul: matmuls against a 4-bit (NF4/FP4, bitsandbytes layout) weight W [N, K] that is
// dequantized on the fly from its packed codes and block scales; no f32 copy of W exists.
//
//   tiled_fwd / gemv8 / gemv_any:  y[m, n] = alpha * sum_k a[m, k] * W[n, k]  (+ y[m, n] if accumulate)
//                    a = x [M, K], y [M, N]           (y = x · Wᵀ, a linear layer)
//   tiled_bwd:       y[m, k] = alpha * sum_n a[m, n] * W[n, k]  (+ y[m, k] if accumulate)
//                    a = dy [M, N], y = dx [M, K]     (dx = dy · W, through the frozen base)
//
// W element e = n*K + k (row-major, blocks may straddle rows):
//   q     = nibble e of codes (byte e/2, high nibble when e is even: bit offset ((e & 7) ^ 1) * 4
//           in u32 word e/8)
//   scale = absmax[e >> bshift]  (blocksize = 1 << bshift)          (f32 bits), or when nested:
//         = dmap[qa] * nested_absmax[b / 256] + offset, qa = byte b of absmax   (double quant)
//   W[e]  = code[q] * scale      (the same f32 product as dequantize4bit; gemv8 scales the
//           dot product of a word's 8 codes instead)
// Bindings:
//   a:      array<f32>  [M, K] or [M, N]      (read; nf4_matmul_f16.wgsl: f16 halves packed in u32)
//   codes:  array<u32>  packed 4-bit codes, ceil(N*K/2) bytes   (read)
//   absmax: array<u32>  f32 per block, or u8 codes per block when nested (read)
//   tables: array<f32>  shared tables: code map (16) at code_off; for nested weights the
//                       256-entry map at nmap_off, nested absmax at nabs_off, offset at off_idx
//   y:      array<f32>  output (read_write)
// Entry points (the 16-entry code map is copied into workgroup memory first):
//   tiled_fwd / tiled_bwd (lib/dequant_tiles.wgsl, shared with the ggml formats): the f32 matmul's
//     tiling (lib/tile_mma.wgsl, as shaders/matmul.wgsl `tiled`): a 64x64 output tile per workgroup of 64
//     threads, 8x8 outputs per thread, reduction in steps of 16 through workgroup memory. Each
//     thread dequantizes 16 consecutive elements of one W row per step (decode16: <= 3 code
//     words, <= 2 block scales) into the B tile. Grid [ceil(N/64) or ceil(K/64), ceil(M/64)].
//   gemv8 (M <= 8, K % 8 == 0): 32 output columns per workgroup (as the f32 gemv_t): 8 groups of 8
//     lanes, each thread 4 columns; lanes stride over K one u32 word (8 codes, one block scale)
//     at a time, the scale applied to the 8-term dot product; partial sums added in workgroup
//     memory. ROWS (override) = M. Grid: ceil(N/32) groups over x/y.
//   gemv_bwd8 (backward, M <= 8, K % 8 == 0): 64 output columns (8 code words) per workgroup, 8
//     lanes per word striding over N, each decoding one word (8 columns, one scale) per row of W.
//     Grid: ceil(K/64) groups over x/y.
//   gemv_any (M <= 8, any K): one workgroup of 64 threads per output column, element by element.

@group(0) @binding(0) var<storage, read> a: array<f32>;
fn act(i: u32) -> f32 { return a[i]; }

//#include "lib/nf4_body.wgsl"
