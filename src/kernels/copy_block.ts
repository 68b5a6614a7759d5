/**
 * 2-D block copies between row-major f32 matrices (shaders/copy_block.wgsl), with a CPU reference:
 * the one primitive behind slicing and concatenating rows or columns and prepending virtual
 * tokens to each sequence; with `accumulate` it is also their backward.
 */
import { check } from "../errors.ts";
import { type Gpu, grid1d, type Tensor } from "../gpu/gpu.ts";

export interface Block {
  rows: number;
  cols: number;
  /** Columns of the source matrix, and the block's first row / column in it. */
  srcCols: number;
  srcRow: number;
  srcCol: number;
  /** Columns of the destination matrix, and where the block lands. */
  dstCols: number;
  dstRow: number;
  dstCol: number;
  /** dst += block instead of dst = block. */
  accumulate?: boolean;
}

function checkBlock(b: Block, srcSize: number, dstSize: number): void {
  for (const k of ["rows", "cols", "srcCols", "srcRow", "srcCol", "dstCols", "dstRow", "dstCol"] as const) {
    check(Number.isInteger(b[k]) && b[k] >= 0, "KERNEL_ARGS", `copyBlock: ${k} = ${b[k]} must be a non-negative integer`);
  }
  check(b.srcCol + b.cols <= b.srcCols && b.dstCol + b.cols <= b.dstCols, "KERNEL_ARGS", `copyBlock: ${b.cols} columns do not fit (source ${b.srcCol}+ of ${b.srcCols}, destination ${b.dstCol}+ of ${b.dstCols})`);
  check((b.srcRow + b.rows) * b.srcCols <= srcSize, "KERNEL_ARGS", `copyBlock: source rows ${b.srcRow}..${b.srcRow + b.rows} out of range`);
  check((b.dstRow + b.rows) * b.dstCols <= dstSize, "KERNEL_ARGS", `copyBlock: destination rows ${b.dstRow}..${b.dstRow + b.rows} out of range`);
}

export function copyBlock(gpu: Gpu, src: Tensor, dst: Tensor, b: Block): void {
  checkBlock(b, src.size, dst.size);
  check(src.dtype === "f32" && dst.dtype === "f32" && src.buffer !== dst.buffer, "KERNEL_ARGS", "copyBlock: f32 tensors, source and destination distinct");
  if (b.rows * b.cols === 0) return;
  gpu.dispatch("copy_block", "main", {
    bindings: { src, dst },
    params: [b.rows, b.cols, b.srcCols, b.srcRow, b.srcCol, b.dstCols, b.dstRow, b.dstCol, b.accumulate ? 1 : 0],
    workgroups: grid1d(b.rows * b.cols, 64),
  });
}

export function copyBlockReference(src: Float32Array, dst: Float32Array, b: Block): void {
  checkBlock(b, src.length, dst.length);
  for (let r = 0; r < b.rows; r++) {
    for (let c = 0; c < b.cols; c++) {
      const v = src[(b.srcRow + r) * b.srcCols + b.srcCol + c], o = (b.dstRow + r) * b.dstCols + b.dstCol + c;
      dst[o] = b.accumulate ? dst[o] + v : v;
    }
  }
}
