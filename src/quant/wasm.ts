/**
 * The quantizer WASM module (wasm/quant/index.ts): instantiated once, synchronously (it is a
 * few KB), with a fixed scratch layout past its heap base:
 *   [tables 4 KiB][input chunk][output chunk]
 * Callers stream data through in chunks of whole blocks so memory stays bounded for any tensor.
 */
import { wasmBytes } from "../assets.ts";

interface QuantExports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  widenF16(src: number, n: number, dst: number): void;
  widenBF16(src: number, n: number, dst: number): void;
  quantize4(src: number, n: number, blocksize: number, mids: number, nMids: number, rankToCode: number, signMag: number, outPacked: number, outAbsmax: number, grid: number): number;
  dequantize4(packed: number, n: number, blocksize: number, code: number, planes: number, absmax: number, out: number): void;
  quantize8(src: number, n: number, blocksize: number, mids: number, outCodes: number, outAbsmax: number): number;
  dequantize8(codes: number, n: number, blocksize: number, map: number, absmax: number, offset: number, out: number): void;
}

/** Elements per chunk: a multiple of every legal blocksize (<= 4096) and of 256; 128 KiB of f32 so a chunk and its outputs stay in L2. */
export const CHUNK = 1 << 15;

export class QuantWasm {
  readonly x: QuantExports;
  /** Start of the 4 KiB table area. */
  readonly tables: number;
  /** Start of the data area (16-byte aligned). */
  readonly data: number;

  /** "relaxed" where the engine takes relaxed SIMD (Deno, Bun, Node >= 22), else "simd". */
  readonly variant: "relaxed" | "simd";

  private constructor(want?: "relaxed" | "simd") {
    // Same source, two builds (wasm/quant/build.json): the relaxed-SIMD one saves a fix-up per
    // table lookup (~20% faster quantize); engines without relaxed SIMD reject it at validation.
    const relaxed = wasmBytes("quant.relaxed");
    this.variant = want ?? (WebAssembly.validate(relaxed as BufferSource) ? "relaxed" : "simd");
    const module = new WebAssembly.Module((this.variant === "relaxed" ? relaxed : wasmBytes("quant")) as BufferSource);
    this.x = new WebAssembly.Instance(module, {
      env: {
        abort: () => {
          throw new Error("quant wasm abort");
        },
      },
    }).exports as unknown as QuantExports;
    this.tables = Math.ceil(this.x.heapBase() / 16) * 16;
    this.data = this.tables + 4096;
  }

  private static instance: QuantWasm | null = null;
  static get(): QuantWasm {
    return QuantWasm.instance ??= new QuantWasm();
  }
  /** Switches to one build (tests check both); null goes back to the engine's best. */
  static use(variant: "relaxed" | "simd" | null): QuantWasm {
    QuantWasm.instance = new QuantWasm(variant ?? undefined);
    return QuantWasm.instance;
  }

  /** Makes memory at least `end` bytes long. */
  ensure(end: number): void {
    const mem = this.x.memory;
    if (end > mem.buffer.byteLength) mem.grow(Math.ceil((end - mem.buffer.byteLength) / 65536));
  }

  u8(ptr: number, n: number): Uint8Array {
    return new Uint8Array(this.x.memory.buffer, ptr, n);
  }
  f32(ptr: number, n: number): Float32Array {
    return new Float32Array(this.x.memory.buffer, ptr, n);
  }
}
