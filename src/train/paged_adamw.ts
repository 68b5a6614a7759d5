/**
 * AdamW optimizer state, resident on the GPU or paged to host memory.
 *
 * Resident: m and v live on the GPU beside each LoRA tensor (category "optimizer").
 *
 * Paged (bitsandbytes' paged optimizers, done explicitly since WebGPU has no unified memory):
 * m and v live in host memory. All trainable tensors form one flat index space, cut into pages of
 * `pageElements`; for each page the GPU holds just four page buffers (param, grad, m, v). A step
 * copies the page's slices of the params and grads into the page buffers (on the GPU), uploads
 * the page's m and v, runs the same AdamW kernel over the page, copies the params back and reads
 * m and v back to the host. AdamW is elementwise with one set of hyper-parameters, so running it
 * over a page gives bit-identical results to running it per tensor: paged updates equal the
 * resident ones exactly.
 */
import { check, PeftError } from "../errors.ts";
import { type Gpu, Tensor } from "../gpu/gpu.ts";
import { adamwStep, type AdamwOptions } from "../kernels/adamw.ts";
import { AdamW8bit } from "./adamw8bit.ts";

/** One trainable tensor and its gradient. */
export interface OptimizerSlot {
  key: string;
  param: Tensor;
  grad: Tensor;
}

/** adamw_8bit: 8-bit blockwise m and v on the GPU (src/train/adamw8bit.ts). */
export type OptimizerName = "adamw" | "paged_adamw" | "adamw_8bit";
export const OPTIMIZERS: OptimizerName[] = ["adamw", "paged_adamw", "adamw_8bit"];

export interface Optimizer {
  readonly name: OptimizerName;
  /** True when the state lives in host memory and streams through GPU pages. */
  readonly paged: boolean;
  readonly slots: OptimizerSlot[];
  /** Elements per GPU page (paged only). */
  readonly pageElements?: number;
  step(o: AdamwOptions): Promise<void>;
  /** m and v of a slot, as host copies. */
  readState(key: string): Promise<{ m: Float32Array; v: Float32Array }>;
  writeState(key: string, m: Float32Array, v: Float32Array): void;
  release(): void;
}

export function slotIndex(slots: OptimizerSlot[], key: string): number {
  const i = slots.findIndex((s) => s.key === key);
  if (i < 0) throw new PeftError("OPTIMIZER_STATE", `no optimizer state for ${key}`);
  return i;
}

export function checkLength(key: string, want: number, m: Float32Array, v: Float32Array) {
  check(m.length === want && v.length === want, "OPTIMIZER_STATE", `${key}: optimizer state has ${m.length}/${v.length} values, the tensor ${want}`);
}

/** m and v on the GPU, one pair per tensor. */
export class ResidentAdamW implements Optimizer {
  readonly name: OptimizerName;
  readonly paged = false;
  private m: Tensor[];
  private v: Tensor[];
  constructor(readonly gpu: Gpu, readonly slots: OptimizerSlot[], name: OptimizerName = "adamw") {
    this.name = name;
    this.m = slots.map((s) => gpu.zeros(s.param.shape, "f32", "optimizer"));
    this.v = slots.map((s) => gpu.zeros(s.param.shape, "f32", "optimizer"));
  }
  step(o: AdamwOptions): Promise<void> {
    this.slots.forEach((s, i) => adamwStep(this.gpu, { param: s.param, grad: s.grad, m: this.m[i], v: this.v[i] }, o));
    return Promise.resolve();
  }
  async readState(key: string) {
    const i = slotIndex(this.slots, key);
    return { m: await this.gpu.readF32(this.m[i]), v: await this.gpu.readF32(this.v[i]) };
  }
  writeState(key: string, m: Float32Array, v: Float32Array): void {
    const i = slotIndex(this.slots, key);
    checkLength(key, this.slots[i].param.size, m, v);
    this.gpu.write(this.m[i], m);
    this.gpu.write(this.v[i], v);
  }
  release(): void {
    this.gpu.flush();
    for (const t of [...this.m, ...this.v]) t.release();
    this.m = [];
    this.v = [];
  }
}

/** The smallest page we use (smaller pages only add dispatches). */
export const MIN_PAGE_ELEMENTS = 1024;

/** m and v in host memory, streamed through four GPU page buffers of `pageElements`. */
export class PagedAdamW implements Optimizer {
  readonly name: OptimizerName = "paged_adamw";
  readonly paged = true;
  /** Host state over the flat index space of all slots. */
  private m: Float32Array;
  private v: Float32Array;
  private offsets: number[] = [];
  private total: number;
  private pages: Tensor[];
  readonly pageElements: number;
  /** Pages streamed so far (for reports and tests). */
  pagesStreamed = 0;

  constructor(readonly gpu: Gpu, readonly slots: OptimizerSlot[], pageElements: number) {
    let off = 0;
    for (const s of slots) {
      check(s.param.dtype === "f32" && s.grad.size === s.param.size, "OPTIMIZER_STATE", `${s.key}: param and grad must be f32 of one size`);
      this.offsets.push(off);
      off += s.param.size;
    }
    this.total = off;
    check(Number.isInteger(pageElements) && pageElements >= 1, "BAD_TRAIN_OPTION", `paged optimizer: page size ${pageElements} must be a positive integer`);
    this.pageElements = Math.min(pageElements, Math.max(1, off));
    this.m = new Float32Array(off);
    this.v = new Float32Array(off);
    this.pages = [0, 1, 2, 3].map(() => gpu.tensor([this.pageElements], "f32", "optimizer"));
  }

  /** Views of the page buffers with exactly `n` elements (the AdamW kernel wants equal sizes). */
  private views(n: number): Tensor[] {
    return this.pages.map((p) => new Tensor(this.gpu, p.buffer, [n], "f32", "optimizer"));
  }

  /** For every slot overlapping flat range [p0, p1): (slot, offset in slot, offset in page, count). */
  private *overlaps(p0: number, p1: number) {
    for (let i = 0; i < this.slots.length; i++) {
      const s0 = this.offsets[i], s1 = s0 + this.slots[i].param.size;
      const a = Math.max(p0, s0), b = Math.min(p1, s1);
      if (a < b) yield { slot: this.slots[i], inSlot: a - s0, inPage: a - p0, count: b - a };
    }
  }

  async step(o: AdamwOptions): Promise<void> {
    const { gpu } = this;
    for (let p0 = 0; p0 < this.total; p0 += this.pageElements) {
      const n = Math.min(this.pageElements, this.total - p0);
      const [param, grad, m, v] = this.views(n);
      for (const r of this.overlaps(p0, p0 + n)) {
        gpu.copy(r.slot.param, param, r.count * 4, r.inSlot * 4, r.inPage * 4);
        gpu.copy(r.slot.grad, grad, r.count * 4, r.inSlot * 4, r.inPage * 4);
      }
      gpu.write(m, this.m.subarray(p0, p0 + n));
      gpu.write(v, this.v.subarray(p0, p0 + n));
      adamwStep(gpu, { param, grad, m, v }, o);
      for (const r of this.overlaps(p0, p0 + n)) gpu.copy(param, r.slot.param, r.count * 4, r.inPage * 4, r.inSlot * 4);
      this.m.set(await gpu.readF32(m, n), p0);
      this.v.set(await gpu.readF32(v, n), p0);
      this.pagesStreamed++;
    }
  }

  readState(key: string) {
    const i = slotIndex(this.slots, key);
    const a = this.offsets[i], b = a + this.slots[i].param.size;
    return Promise.resolve({ m: this.m.slice(a, b), v: this.v.slice(a, b) });
  }
  writeState(key: string, m: Float32Array, v: Float32Array): void {
    const i = slotIndex(this.slots, key);
    checkLength(key, this.slots[i].param.size, m, v);
    this.m.set(m, this.offsets[i]);
    this.v.set(v, this.offsets[i]);
  }
  /** Host bytes of the paged state. */
  get hostBytes(): number {
    return this.m.byteLength + this.v.byteLength;
  }
  release(): void {
    this.gpu.flush();
    for (const t of this.pages) t.release();
    this.pages = [];
  }
}

export interface CreateOptimizerOptions {
  /**
   * paged_adamw: GPU bytes the optimizer may use. When the resident state fits, it stays resident
   * (paging only under memory pressure, as bitsandbytes' paged optimizers); otherwise pages of
   * what fits. Undefined = no limit (resident).
   */
  gpuBytes?: number;
  /** Force paging with pages of this many elements (tests, benchmarks). */
  pageElements?: number;
}

/** GPU bytes of resident AdamW state for these slots (two f32 tensors each, pool size classes). */
export function residentStateBytes(slots: { param: { size: number } }[], roundSize: (b: number) => number): number {
  return slots.reduce((s, x) => s + 2 * roundSize(x.param.size * 4), 0);
}

export function createOptimizer(gpu: Gpu, name: OptimizerName, slots: OptimizerSlot[], o: CreateOptimizerOptions = {}): Optimizer {
  if (!OPTIMIZERS.includes(name)) {
    throw new PeftError("BAD_TRAIN_OPTION", `optimizer must be one of ${OPTIMIZERS.join(", ")}, got ${JSON.stringify(name)}`);
  }
  if (name === "adamw") return new ResidentAdamW(gpu, slots);
  if (name === "adamw_8bit") return new AdamW8bit(gpu, slots);
  if (o.pageElements !== undefined) return new PagedAdamW(gpu, slots, o.pageElements);
  if (o.gpuBytes === undefined || residentStateBytes(slots, poolSize) <= o.gpuBytes) return new ResidentAdamW(gpu, slots, "paged_adamw");
  const elements = Math.floor(o.gpuBytes / 16);
  // Four page buffers in pool size classes: shrink until they fit.
  let page = elements;
  while (page > MIN_PAGE_ELEMENTS && 4 * poolSize(page * 4) > o.gpuBytes) page = Math.floor(page * 0.9);
  if (page < MIN_PAGE_ELEMENTS) {
    throw new PeftError("GPU_BUDGET_EXCEEDED", `paged_adamw: only ${o.gpuBytes} GPU bytes are left for optimizer pages; at least ${4 * poolSize(MIN_PAGE_ELEMENTS * 4)} are needed`);
  }
  return new PagedAdamW(gpu, slots, page);
}

/** The allocator's pool size classes (src/gpu/gpu.ts Gpu.roundSize: 4 steps per octave). */
export function poolSize(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 4096) return Math.ceil(b / 256) * 256;
  const p = 2 ** Math.floor(Math.log2(b));
  const step = p / 4;
  return Math.ceil(b / step) * step;
}
