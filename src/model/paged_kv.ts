/**
 * A paged KV cache (vLLM's PagedAttention, S-LoRA's unified pool): per layer one K and one V
 * tensor of `numBlocks` blocks of `blockSize` rows, handed out block by block to sequences. A
 * sequence's block table lists its blocks in position order; kernels/paged_attention.ts reads
 * through it. Blocks are reserved up front for a whole request (prompt, virtual tokens and
 * max_tokens), so a running sequence never runs out mid-generation: when the pool is full a new
 * request waits, and one that could never fit is refused.
 */
import { PeftError } from "../errors.ts";
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import type { LlamaConfig } from "./config.ts";

export interface KvPoolOptions {
  /** Rows per block (default 16). */
  blockSize?: number;
  /** Blocks in the pool (default: enough for 8 full contexts, at most 1 GiB of K and V). */
  numBlocks?: number;
}

export class KvPool {
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  private readonly freeList: number[];

  constructor(readonly gpu: Gpu, readonly config: LlamaConfig, o: KvPoolOptions = {}) {
    const kvDim = config.nKvHeads * config.headDim;
    this.blockSize = o.blockSize ?? 16;
    const bytesPerBlock = 2 * config.nLayers * this.blockSize * kvDim * 4;
    const fallback = Math.min(Math.ceil((8 * config.contextLength) / this.blockSize), Math.floor(2 ** 30 / bytesPerBlock));
    this.numBlocks = o.numBlocks ?? Math.max(1, fallback);
    if (!Number.isInteger(this.blockSize) || this.blockSize < 1) throw new PeftError("BAD_PARAMETER", `KV cache: blockSize must be an integer >= 1, got ${o.blockSize}`);
    if (!Number.isInteger(this.numBlocks) || this.numBlocks < 1) throw new PeftError("BAD_PARAMETER", `KV cache: numBlocks must be an integer >= 1, got ${o.numBlocks}`);
    const rows = this.numBlocks * this.blockSize;
    for (let l = 0; l < config.nLayers; l++) {
      this.k.push(gpu.tensor([rows, kvDim], "f32", "kv_cache"));
      this.v.push(gpu.tensor([rows, kvDim], "f32", "kv_cache"));
    }
    // Lowest block ids first (pop from the end).
    this.freeList = Array.from({ length: this.numBlocks }, (_, i) => this.numBlocks - 1 - i);
  }

  /** Blocks that hold `tokens` positions. */
  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  get blocksFree(): number {
    return this.freeList.length;
  }

  get blocksUsed(): number {
    return this.numBlocks - this.freeList.length;
  }

  /** `n` free blocks, or null when fewer are free (nothing is taken then). */
  allocate(n: number): number[] | null {
    if (n > this.freeList.length) return null;
    return this.freeList.splice(this.freeList.length - n, n).reverse();
  }

  /** Gives blocks back (a finished or cancelled sequence). */
  free(blocks: readonly number[]): void {
    for (const b of blocks) {
      if (!Number.isInteger(b) || b < 0 || b >= this.numBlocks) throw new PeftError("BAD_PARAMETER", `KV cache: block ${b} is not in the pool`);
    }
    this.freeList.push(...[...blocks].reverse());
  }

  destroy(): void {
    this.gpu.flush();
    for (const t of [...this.k, ...this.v]) t.release();
    this.k.length = 0;
    this.v.length = 0;
  }
}
