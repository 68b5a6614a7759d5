/**
 * GPU core: tensors in a pooled set of storage buffers, a pipeline cache (each WGSL pipeline
 * compiled once), one `dispatch` helper that binds buffers by their WGSL names, batched
 * command encoding (dispatches go into one open compute pass; one submit per `flush`), readback.
 *
 * Kernels never create buffers or pipelines themselves: they call `gpu.tensor` and `gpu.dispatch`.
 */
import { PeftError } from "../errors.ts";
import { shaderSource } from "../assets.ts";
import { type DeviceInfo, type DeviceOptions, requestDevice } from "./device.ts";
import { parseBindings, type WgslBinding } from "./wgsl_bindings.ts";

export type DType = "f32" | "u32" | "i32" | "f16" | "u8";
const DTYPE_BYTES: Record<DType, number> = { f32: 4, u32: 4, i32: 4, f16: 2, u8: 1 };

/** What a tensor's bytes are for, so memory reports can say where GPU memory goes. */
export type MemoryCategory = "weights" | "activations" | "lora" | "gradients" | "optimizer" | "kv_cache" | "other";

export class Tensor {
  constructor(
    readonly gpu: Gpu,
    readonly buffer: GPUBuffer,
    readonly shape: number[],
    readonly dtype: DType,
    readonly category: MemoryCategory,
  ) {}
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get byteLength(): number {
    return Math.ceil((this.size * DTYPE_BYTES[this.dtype]) / 4) * 4;
  }
  /** Returns the buffer to the pool; the tensor must not be used afterwards. */
  release(): void {
    this.gpu.release(this);
  }
}

/** Marks a uniform parameter as f32 (plain numbers are u32, negative integers i32). */
export class F32 {
  constructor(readonly value: number) {}
}
export const f32 = (v: number) => new F32(v);
export class I32 {
  constructor(readonly value: number) {}
}
export const i32 = (v: number) => new I32(v);
export type Param = number | F32 | I32;

/**
 * Bind this to a binding the dispatched entry point does not touch: the core binds a private
 * scratch buffer (WebGPU needs every declared binding bound, and binding a real tensor twice
 * with one side writable is invalid).
 */
export const UNUSED = Object.freeze({ unused: true }) as unknown as GPUBuffer;

export interface DispatchArgs {
  /** Storage buffers by their WGSL variable names. */
  bindings: Record<string, Tensor | GPUBuffer>;
  /** Values of the single `var<uniform>` struct, 4 bytes each, in field order. */
  params?: Param[];
  /** Workgroup counts [x, y?, z?]. */
  workgroups: number[];
  /** Values for WGSL `override` constants (part of the pipeline cache key). */
  constants?: Record<string, number>;
}

interface CachedPipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  bindings: WgslBinding[];
}

const UNIFORM_SLOT = 256; // minUniformBufferOffsetAlignment on every adapter we know
const UNIFORM_ARENA = 256 * UNIFORM_SLOT;

export interface GpuStats {
  dispatches: number;
  submits: number;
  readbacks: number;
}

export class Gpu {
  private pipelines = new Map<string, CachedPipeline>();
  private modules = new Map<string, { module: GPUShaderModule; bindings: WgslBinding[] }>();
  private pool = new Map<number, GPUBuffer[]>();
  private bufferSize = new WeakMap<GPUBuffer, number>();
  private held = new Map<MemoryCategory, number>();
  private pooledBytes = 0;
  private peakBytes = 0;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private uniformBuffer: GPUBuffer;
  private uniformStaging = new ArrayBuffer(UNIFORM_ARENA);
  private uniformUsed = 0;
  readonly stats: GpuStats = { dispatches: 0, submits: 0, readbacks: 0 };
  /**
   * The first GPU error (validation, out of memory, device lost). Once set, every dispatch,
   * submit and readback throws it: results computed after an error cannot be trusted (a rejected
   * pipeline computes nothing and reads back zeros), so an error must never pass as a log line.
   */
  private failure: PeftError | null = null;
  /** Error scopes around pipeline creation, not yet popped: readbacks wait for them. */
  private pendingScopes: Promise<void>[] = [];

  private constructor(readonly device: GPUDevice, readonly info: DeviceInfo) {
    this.uniformBuffer = device.createBuffer({ size: UNIFORM_ARENA, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: "uniform arena" });
    device.lost?.then((i) => {
      if (i.reason !== "destroyed") this.fail(new PeftError("GPU_DEVICE_LOST", `the WebGPU device was lost (${i.message}); restart the process`));
      else this.failure ??= new PeftError("GPU_DESTROYED", "this GPU device was destroyed (model closed)");
    });
    // Errors outside any scope (bind groups, dispatches, submits). With a listener, Dawn and
    // browsers no longer only print them.
    device.addEventListener?.("uncapturederror", (ev) => {
      ev.preventDefault?.();
      const err = (ev as GPUUncapturedErrorEvent).error;
      this.fail(new PeftError(gpuErrorCode(err), `WebGPU error: ${err?.message ?? String(err)}`));
    });
  }

  private fail(e: PeftError): void {
    this.failure ??= e;
  }

  /** Throws the first GPU error seen, if any. */
  private checkHealthy(): void {
    if (this.failure) throw this.failure;
  }

  /** Waits for the error scopes of pipelines created so far, then throws the first GPU error. */
  private async settle(): Promise<void> {
    while (this.pendingScopes.length) await Promise.all(this.pendingScopes.splice(0));
    this.checkHealthy();
  }

  static async create(options: DeviceOptions = {}): Promise<Gpu> {
    const { device, info } = await requestDevice(options);
    return new Gpu(device, info);
  }

  // ------------------------------------------------------------ memory

  /** Pool size classes: 4 steps per octave, so slack is at most ~19%. */
  private static roundSize(bytes: number): number {
    const b = Math.max(16, Math.ceil(bytes / 16) * 16);
    if (b <= 4096) return Math.ceil(b / 256) * 256;
    const p = 2 ** Math.floor(Math.log2(b));
    const step = p / 4;
    return Math.ceil(b / step) * step;
  }

  /** An uninitialised tensor (contents are whatever the pooled buffer held). */
  tensor(shape: number[], dtype: DType = "f32", category: MemoryCategory = "activations"): Tensor {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new PeftError("BAD_SHAPE", `tensor shape [${shape}] must be non-negative integers`);
    }
    const n = shape.reduce((a, b) => a * b, 1);
    // A zero-sized buffer write panics Deno's wgpu (queue.rs): nothing empty reaches the device.
    if (n === 0) throw new PeftError("BAD_SHAPE", `tensor shape [${shape}] has no elements; empty tensors are not allowed on the GPU`);
    // Weights live as long as the model: sized exactly (16-byte granularity) so memory figures
    // are not inflated by pool size classes; everything else uses the pool's classes.
    const raw = n * DTYPE_BYTES[dtype];
    const bytes = category === "weights" ? Math.max(16, Math.ceil(raw / 16) * 16) : Gpu.roundSize(raw);
    if (bytes > this.info.limits.maxBufferSize) {
      throw new PeftError("GPU_BUFFER_TOO_LARGE", `tensor [${shape}] ${dtype} needs ${bytes} bytes, over this GPU's maxBufferSize ${this.info.limits.maxBufferSize}`);
    }
    let buffer = this.pool.get(bytes)?.pop();
    if (buffer) {
      this.pooledBytes -= bytes;
    } else {
      buffer = this.device.createBuffer({
        size: bytes,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
      this.bufferSize.set(buffer, bytes);
    }
    this.held.set(category, (this.held.get(category) ?? 0) + bytes);
    const total = this.bytesInUse() + this.pooledBytes;
    if (total > this.peakBytes) this.peakBytes = total;
    return new Tensor(this, buffer, [...shape], dtype, category);
  }

  /** A tensor filled with zeros (cleared on the GPU, in order with queued work). */
  zeros(shape: number[], dtype: DType = "f32", category: MemoryCategory = "activations"): Tensor {
    const t = this.tensor(shape, dtype, category);
    this.endPass();
    this.commandEncoder().clearBuffer(t.buffer);
    return t;
  }

  /** Zero-fills an existing tensor on the GPU (in order with queued work). */
  clear(t: Tensor): void {
    this.endPass();
    this.commandEncoder().clearBuffer(t.buffer);
  }

  /** Uploads host data into a new tensor. */
  upload(data: Float32Array | Uint32Array | Int32Array | Uint16Array | Uint8Array, shape: number[], dtype?: DType, category: MemoryCategory = "weights"): Tensor {
    const dt: DType = dtype ??
      (data instanceof Float32Array ? "f32" : data instanceof Uint32Array ? "u32" : data instanceof Int32Array ? "i32" : data instanceof Uint16Array ? "f16" : "u8");
    const n = shape.reduce((a, b) => a * b, 1);
    if (n === 0) throw new PeftError("BAD_SHAPE", `upload: shape [${shape}] has no elements; empty tensors are not allowed on the GPU`);
    if (data.byteLength !== n * DTYPE_BYTES[dt]) {
      throw new PeftError("BAD_SHAPE", `upload: ${data.byteLength} bytes do not match shape [${shape}] of ${dt}`);
    }
    const t = this.tensor(shape, dt, category);
    this.write(t, data);
    return t;
  }

  /** Writes host data into a tensor at a byte offset (ordered with queued work). */
  write(t: Tensor | GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    const buffer = t instanceof Tensor ? t.buffer : t;
    if (data.byteLength === 0) return; // nothing to write (and an empty write panics Deno's wgpu)
    // Queue writes execute before the pending encoder's commands: submit those first.
    this.flush();
    const len = Math.ceil(data.byteLength / 4) * 4;
    if (len === data.byteLength) {
      this.device.queue.writeBuffer(buffer, byteOffset, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    } else {
      const padded = new Uint8Array(len);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.device.queue.writeBuffer(buffer, byteOffset, padded);
    }
  }

  /** Copies `bytes` from one tensor to another on the GPU. */
  copy(src: Tensor, dst: Tensor, bytes = Math.min(src.byteLength, dst.byteLength), srcOffset = 0, dstOffset = 0): void {
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src.buffer, srcOffset, dst.buffer, dstOffset, bytes);
  }

  release(t: Tensor): void {
    const bytes = this.bufferSize.get(t.buffer)!;
    this.held.set(t.category, (this.held.get(t.category) ?? 0) - bytes);
    let list = this.pool.get(bytes);
    if (!list) this.pool.set(bytes, list = []);
    list.push(t.buffer);
    this.pooledBytes += bytes;
  }

  /** Bytes in GPU buffers handed out, by category. */
  memoryByCategory(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of this.held) if (v) out[k] = v;
    return out;
  }
  bytesInUse(): number {
    let s = 0;
    for (const v of this.held.values()) s += v;
    return s;
  }
  /** All bytes our allocator holds in GPU buffers: in use plus pooled slack. */
  bytesHeld(): number {
    return this.bytesInUse() + this.pooledBytes;
  }
  peakBytesHeld(): number {
    return this.peakBytes;
  }
  resetPeak(): void {
    this.peakBytes = this.bytesHeld();
  }
  /** Frees pooled (unused) buffers. */
  trim(): void {
    this.flush();
    for (const list of this.pool.values()) for (const b of list) b.destroy();
    this.pool.clear();
    this.pooledBytes = 0;
  }

  // ------------------------------------------------------------ kernels

  private shader(name: string) {
    let m = this.modules.get(name);
    if (!m) {
      const code = shaderSource(name);
      const module = this.device.createShaderModule({ code, label: name });
      m = { module, bindings: parseBindings(code, name) };
      this.modules.set(name, m);
    }
    return m;
  }

  private pipelineFor(shader: string, entry: string, constants?: Record<string, number>): CachedPipeline {
    const key = `${shader}:${entry}:${constants ? JSON.stringify(constants) : ""}`;
    let p = this.pipelines.get(key);
    if (!p) {
      const { module, bindings } = this.shader(shader);
      const storage = bindings.filter((b) => b.kind !== "uniform").length;
      const allowed = this.device.limits.maxStorageBuffersPerShaderStage;
      if (storage > allowed) {
        const offered = this.info.adapterLimits.maxStorageBuffersPerShaderStage;
        throw new PeftError(
          "GPU_LIMIT",
          `kernel ${shader}.${entry} binds ${storage} storage buffers, over this device's maxStorageBuffersPerShaderStage of ${allowed}` +
            (offered !== undefined && offered > allowed ? ` (the adapter offers ${offered}, but the device request for it failed)` : ` (this GPU adapter offers ${offered ?? allowed})`),
        );
      }
      this.device.pushErrorScope("validation");
      this.device.pushErrorScope("out-of-memory");
      const layout = this.device.createBindGroupLayout({
        label: `${shader}.${entry}`,
        entries: bindings.map((b) => ({
          binding: b.binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: b.kind },
        })),
      });
      const pipeline = this.device.createComputePipeline({
        label: `${shader}.${entry}`,
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: entry, constants },
      });
      const label = `${shader}.${entry}`;
      const report = (err: GPUError | null) => {
        if (err) this.fail(new PeftError(gpuErrorCode(err), `kernel ${label} was rejected by WebGPU: ${err.message}`));
      };
      this.pendingScopes.push(this.device.popErrorScope().then(report), this.device.popErrorScope().then(report));
      p = { pipeline, layout, bindings };
      this.pipelines.set(key, p);
    }
    return p;
  }

  /**
   * Builds (and caches) a kernel's pipeline ahead of its first dispatch; a kernel WebGPU rejects
   * throws here (over a limit) or at the next readback / sync (validation).
   */
  prepare(shader: string, entry: string, constants?: Record<string, number>): void {
    this.checkHealthy();
    this.pipelineFor(shader, entry, constants);
  }

  /** Records one compute dispatch of `shader`'s `entry` into the current batch. */
  dispatch(shader: string, entry: string, args: DispatchArgs): void {
    this.checkHealthy();
    const p = this.pipelineFor(shader, entry, args.constants);
    const entries: GPUBindGroupEntry[] = [];
    const seen = new Map<GPUBuffer, WgslBinding>();
    for (const b of p.bindings) {
      if (b.kind === "uniform") {
        if (!args.params) throw new PeftError("KERNEL_ARGS", `${shader}.${entry}: uniform ${b.name} needs params`);
        if (this.uniformUsed + UNIFORM_SLOT > UNIFORM_ARENA) this.flush();
        const off = this.uniformUsed;
        const u32 = new Uint32Array(this.uniformStaging, off, UNIFORM_SLOT / 4);
        const f = new Float32Array(this.uniformStaging, off, UNIFORM_SLOT / 4);
        const i = new Int32Array(this.uniformStaging, off, UNIFORM_SLOT / 4);
        args.params.forEach((v, k) => {
          if (v instanceof F32) f[k] = v.value;
          else if (v instanceof I32) i[k] = v.value;
          else if (Number.isInteger(v) && v >= 0 && v <= 0xffffffff) u32[k] = v;
          else if (Number.isInteger(v)) i[k] = v;
          else throw new PeftError("KERNEL_ARGS", `${shader}.${entry}: param #${k} = ${v} is not an integer; wrap floats in f32()`);
        });
        this.uniformUsed += UNIFORM_SLOT;
        entries.push({ binding: b.binding, resource: { buffer: this.uniformBuffer, offset: off, size: UNIFORM_SLOT } });
      } else {
        const t = args.bindings[b.name];
        if (!t) throw new PeftError("KERNEL_ARGS", `${shader}.${entry}: no buffer given for binding ${b.name}`);
        const buf = t === UNUSED ? this.scratch(b.binding) : t instanceof Tensor ? t.buffer : t;
        // WebGPU (Dawn, under Bun/Node) rejects one buffer bound twice when either binding is
        // writable; wgpu (Deno) lets it pass. Catch it here so it fails the same way everywhere.
        const prev = seen.get(buf);
        if (prev && (prev.kind === "storage" || b.kind === "storage")) {
          throw new PeftError("KERNEL_ARGS", `${shader}.${entry}: ${prev.name} and ${b.name} are the same buffer and one is writable (aliasing is invalid in WebGPU)`);
        }
        seen.set(buf, b);
        entries.push({ binding: b.binding, resource: { buffer: buf } });
      }
    }
    for (const name of Object.keys(args.bindings)) {
      if (!p.bindings.some((b) => b.name === name)) {
        throw new PeftError("KERNEL_ARGS", `${shader}.${entry}: shader has no binding named ${name}`);
      }
    }
    const [x, y = 1, z = 1] = args.workgroups;
    const max = this.info.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) {
      throw new PeftError("KERNEL_ARGS", `${shader}.${entry}: workgroups [${x},${y},${z}] exceed ${max} per dimension`);
    }
    if (x === 0 || y === 0 || z === 0) return;
    const bindGroup = this.device.createBindGroup({ layout: p.layout, entries });
    const pass = this.computePass();
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    this.stats.dispatches++;
  }

  private scratchBuffers: GPUBuffer[] = [];
  /** A small buffer per binding slot for bindings an entry point does not use (never aliases). */
  private scratch(slot: number): GPUBuffer {
    return this.scratchBuffers[slot] ??= this.device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE, label: `unused binding ${slot}` });
  }

  private commandEncoder(): GPUCommandEncoder {
    return this.encoder ??= this.device.createCommandEncoder();
  }
  private computePass(): GPUComputePassEncoder {
    return this.pass ??= this.commandEncoder().beginComputePass();
  }
  private endPass() {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /** Submits everything recorded so far as one command buffer. */
  flush(): void {
    this.checkHealthy();
    if (!this.encoder) return;
    this.endPass();
    if (this.uniformUsed) {
      this.device.queue.writeBuffer(this.uniformBuffer, 0, this.uniformStaging, 0, this.uniformUsed);
      this.uniformUsed = 0;
    }
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.stats.submits++;
  }

  /** Waits until all submitted work is done. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.settle();
  }

  /** Reads a tensor (or its first `count` elements) back to the host. */
  async read(t: Tensor, count = t.size, elementOffset = 0): Promise<Float32Array | Uint32Array | Int32Array | Uint8Array> {
    const esz = DTYPE_BYTES[t.dtype];
    const start = Math.floor((elementOffset * esz) / 4) * 4;
    const end = Math.ceil(((elementOffset + count) * esz) / 4) * 4;
    const bytes = await this.readBytes(t.buffer, start, end - start);
    const skip = elementOffset * esz - start;
    const raw = bytes.buffer.slice(skip, skip + count * esz);
    switch (t.dtype) {
      case "f32": return new Float32Array(raw);
      case "u32": return new Uint32Array(raw);
      case "i32": return new Int32Array(raw);
      case "f16": return new Uint8Array(raw);
      case "u8": return new Uint8Array(raw);
    }
  }

  async readF32(t: Tensor, count = t.size, elementOffset = 0): Promise<Float32Array> {
    if (t.dtype !== "f32") throw new PeftError("KERNEL_ARGS", `readF32 on a ${t.dtype} tensor`);
    return await this.read(t, count, elementOffset) as Float32Array;
  }

  async readBytes(buffer: GPUBuffer, byteOffset: number, byteLength: number): Promise<Uint8Array> {
    this.endPass();
    const staging = this.device.createBuffer({ size: Math.max(4, byteLength), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.commandEncoder().copyBufferToBuffer(buffer, byteOffset, staging, 0, byteLength);
    this.flush();
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      staging.destroy();
      await this.settle();
      throw new PeftError("GPU_READBACK", `reading a GPU buffer back failed: ${(e as Error).message}`);
    }
    // Copy out element by element-safe way: set() into our own buffer, then unmap.
    const out = new Uint8Array(byteLength);
    out.set(new Uint8Array(staging.getMappedRange(0, Math.max(4, byteLength))).subarray(0, byteLength));
    staging.unmap();
    staging.destroy();
    this.stats.readbacks++;
    await this.settle();
    return out;
  }

  destroy(): void {
    if (!this.failure) {
      this.flush();
      this.trim();
    }
    this.device.destroy();
  }
}

function gpuErrorCode(err: unknown): string {
  const name = (err as { constructor?: { name?: string } })?.constructor?.name ?? "";
  return /OutOfMemory/i.test(name) ? "GPU_OUT_OF_MEMORY" : /Internal/i.test(name) ? "GPU_INTERNAL" : "GPU_VALIDATION";
}

/** Workgroup counts for `n` threads of `size` each, split over x and y when x would exceed 65535. */
export function grid1d(n: number, size: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / size));
  if (groups <= 65535) return [groups, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y];
}
