/**
 * One GPU bank holding the LoRA A and B matrices of every adapter that has joined a batch, so
 * the gathered kernel (kernels/lora_gather.ts) reads rows of different adapters and ranks in one
 * dispatch. A tensor is copied in (on the GPU, in the command stream) the first time a batch
 * uses it and keeps its offset; the bank grows by doubling, and when it would pass `maxBytes` it
 * starts over empty (entries of adapters that are gone are dropped that way). Adapters must not
 * change while they are served (the bank holds a copy).
 */
import type { Gpu, Tensor } from "../gpu/gpu.ts";

export class LoraBank {
  private bank: Tensor | null = null;
  private used = 0;
  private readonly offsets = new Map<Tensor, number>();
  /** Bumped by every reset: offsets handed out before it are void. */
  generation = 0;

  constructor(readonly gpu: Gpu, readonly maxBytes = 256 << 20) {}

  /** The bank tensor (valid until the next `offsetOf` that grows it). */
  get tensor(): Tensor {
    if (!this.bank) this.bank = this.gpu.tensor([1024], "f32", "lora");
    return this.bank;
  }

  get bytes(): number {
    return this.bank?.byteLength ?? 0;
  }

  /** Offset (in f32 elements) of t's copy in the bank, copying it in on first use. */
  offsetOf(t: Tensor): number {
    const have = this.offsets.get(t);
    if (have !== undefined) return have;
    if ((this.used + t.size) * 4 > this.maxBytes && this.used > 0) this.reset();
    this.reserve(this.used + t.size);
    const off = this.used;
    this.gpu.copy(t, this.bank!, t.size * 4, 0, off * 4);
    this.offsets.set(t, off);
    this.used += t.size;
    return off;
  }

  /** Forgets every entry (the next batch copies what it uses again). */
  reset(): void {
    this.offsets.clear();
    this.used = 0;
    this.generation++;
  }

  private reserve(n: number) {
    const cur = this.tensor;
    if (cur.size >= n) return;
    let size = cur.size;
    while (size < n) size *= 2;
    const next = this.gpu.tensor([size], "f32", "lora");
    if (this.used) this.gpu.copy(cur, next, this.used * 4);
    // Dispatches already recorded read the old bank: submit them before its buffer can be reused.
    this.gpu.flush();
    cur.release();
    this.bank = next;
  }

  destroy(): void {
    this.gpu.flush();
    this.bank?.release();
    this.bank = null;
    this.reset();
  }
}
