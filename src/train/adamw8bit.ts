/**
 * `adamw_8bit`: AdamW with 8-bit blockwise state on the GPU (bitsandbytes' AdamW8bit with its
 * blockwise quantization), about a quarter of AdamW's optimizer bytes: m and v take one byte a
 * value plus one f32 absmax per 256 values each, instead of four bytes each.
 *
 * The state of all slots lives in few arenas (src/kernels/adamw8bit.ts), each slot starting on a
 * block boundary: one tensor per slot would cost a whole pool size class (256 bytes at least) for
 * a handful of absmax values. An arena stays within the GPU's binding limit.
 *
 * Checkpoints hold the dequantized f32 m and v (the same file as AdamW's); writeState quantizes
 * them back to the same codes and absmax values, so a resumed run continues exactly.
 */
import { check } from "../errors.ts";
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import type { AdamwOptions } from "../kernels/adamw.ts";
import { ADAMW8BIT_BLOCK, adamw8bitStep, adamw8bitTables, dequantize8, M_MAP, quantize8, V_MAP, zeroCode } from "../kernels/adamw8bit.ts";
import { checkLength, type Optimizer, type OptimizerName, type OptimizerSlot, slotIndex } from "./paged_adamw.ts";

const WORDS = ADAMW8BIT_BLOCK / 4;

interface Arena {
  blocks: number;
  /** u32 [2 * blocks * 64]: m codes, then v codes. */
  codes: Tensor;
  /** f32 [2 * blocks]: m absmax, then v absmax. */
  absmax: Tensor;
}

/** The quantized state of one slot (codes unpacked, one a value). */
export interface QuantizedMoments {
  qm: Uint8Array;
  absm: Float32Array;
  qv: Uint8Array;
  absv: Float32Array;
}

/** Blocks per arena: its codes tensor, rounded up to a pool size class, within the binding limits. */
function arenaBlocks(gpu: Gpu): number {
  const { maxStorageBufferBindingSize, maxBufferSize } = gpu.info.limits;
  // pool size classes round up by less than 25%
  return Math.max(1, Math.floor((0.75 * Math.min(maxStorageBufferBindingSize, maxBufferSize)) / (2 * ADAMW8BIT_BLOCK)));
}

export class AdamW8bit implements Optimizer {
  readonly name: OptimizerName = "adamw_8bit";
  readonly paged = false;
  private tables: Tensor;
  private arenas: Arena[];
  private places: { arena: number; blockOff: number; blocks: number }[] = [];

  constructor(readonly gpu: Gpu, readonly slots: OptimizerSlot[], maxArenaBlocks = arenaBlocks(gpu)) {
    const sizes: number[] = [];
    for (const s of slots) {
      check(s.param.dtype === "f32" && s.grad.dtype === "f32" && s.grad.size === s.param.size, "OPTIMIZER_STATE", `${s.key}: param and grad must be f32 of one size`);
      const blocks = Math.ceil(s.param.size / ADAMW8BIT_BLOCK);
      if (!sizes.length || sizes[sizes.length - 1] + blocks > maxArenaBlocks) sizes.push(0);
      this.places.push({ arena: sizes.length - 1, blockOff: sizes[sizes.length - 1], blocks });
      sizes[sizes.length - 1] += blocks;
    }
    this.tables = adamw8bitTables(gpu);
    this.arenas = sizes.map((blocks) => {
      const codes = gpu.tensor([2 * blocks * WORDS], "u32", "optimizer");
      // All zeros: absmax 0 and the code of 0.0 (127 for m, 0 for v).
      const init = new Uint8Array(2 * blocks * ADAMW8BIT_BLOCK);
      init.fill(zeroCode(M_MAP), 0, blocks * ADAMW8BIT_BLOCK).fill(zeroCode(V_MAP), blocks * ADAMW8BIT_BLOCK);
      gpu.write(codes, init);
      return { blocks, codes, absmax: gpu.zeros([2 * blocks], "f32", "optimizer") };
    });
  }

  step(o: AdamwOptions): Promise<void> {
    this.slots.forEach((s, i) => {
      const p = this.places[i], a = this.arenas[p.arena];
      adamw8bitStep(this.gpu, { param: s.param, grad: s.grad, codes: a.codes, absmax: a.absmax, tables: this.tables, blockOffset: p.blockOff }, o);
    });
    return Promise.resolve();
  }

  /** The slot's codes (one a value) and absmax values as stored. */
  async readQuantized(key: string): Promise<QuantizedMoments> {
    const i = slotIndex(this.slots, key), n = this.slots[i].param.size;
    const p = this.places[i], a = this.arenas[p.arena];
    const codes = async (block: number) => new Uint8Array((await this.gpu.read(a.codes, p.blocks * WORDS, block * WORDS)).buffer, 0, n);
    const absmax = async (block: number) => await this.gpu.read(a.absmax, p.blocks, block) as Float32Array;
    return { qm: await codes(p.blockOff), absm: await absmax(p.blockOff), qv: await codes(a.blocks + p.blockOff), absv: await absmax(a.blocks + p.blockOff) };
  }

  /** Dequantized m and v (f32), as checkpoints store them. */
  async readState(key: string): Promise<{ m: Float32Array; v: Float32Array }> {
    const q = await this.readQuantized(key);
    return { m: dequantize8(q.qm, q.absm, M_MAP), v: dequantize8(q.qv, q.absv, V_MAP) };
  }

  /** Quantizes m and v (values readState gave come back as the same codes and absmax). */
  writeState(key: string, m: Float32Array, v: Float32Array): void {
    const i = slotIndex(this.slots, key);
    checkLength(key, this.slots[i].param.size, m, v);
    const p = this.places[i], a = this.arenas[p.arena];
    const write = (x: Float32Array, t: typeof M_MAP, block: number) => {
      // whole blocks: the values past the tensor's end keep the code of 0.0
      const q = quantize8(x, t, true, new Uint8Array(p.blocks * ADAMW8BIT_BLOCK).fill(zeroCode(t)));
      this.gpu.write(a.codes, q.codes, block * ADAMW8BIT_BLOCK);
      this.gpu.write(a.absmax, q.absmax, block * 4);
    };
    write(m, M_MAP, p.blockOff);
    write(v, V_MAP, a.blocks + p.blockOff);
  }

  release(): void {
    this.gpu.flush();
    for (const a of this.arenas) a.codes.release(), a.absmax.release();
    this.tables.release();
    this.arenas = [];
  }
}
