/**
 * Random-access byte sources: a file read lazily through a handle, a Blob or File (a web page's
 * picked or dropped file) read lazily by slices, or bytes already in memory. Parsers ask for
 * ranges; nothing reads a whole model file twice.
 */
import { open, rename, rm, stat } from "../util/host.ts";
import { PeftError } from "../errors.ts";

export interface ByteSource {
  /** Name used in error messages (the file path, or "<memory>"). */
  readonly name: string;
  readonly size: number;
  /** Reads exactly `length` bytes at `offset` into a fresh, 8-byte aligned buffer. */
  read(offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** What the readers accept: a path, bytes, or a Blob / File. */
export type ByteInput = string | Uint8Array | ArrayBuffer | Blob;

/** A name for messages: a File's name, else `fallback`. */
export function inputName(input: Exclude<ByteInput, string>, fallback: string): string {
  return typeof File !== "undefined" && input instanceof File && input.name ? input.name : fallback;
}

/** A path as a file source, anything else as a memory or Blob source named `name` (default: a File's name). */
export async function openByteSource(input: ByteInput, name?: string): Promise<ByteSource> {
  if (typeof input === "string") return await fileSource(input);
  if (input instanceof Uint8Array) return memorySource(input, name);
  if (input instanceof ArrayBuffer) return memorySource(new Uint8Array(input), name);
  if (typeof Blob !== "undefined" && input instanceof Blob) return blobSource(input, name ?? inputName(input, "<blob>"));
  throw new PeftError("BAD_PARAMETER", `${name ?? "input"}: expected a path, a Uint8Array, an ArrayBuffer or a Blob/File, got ${Object.prototype.toString.call(input)}`);
}

/**
 * A Blob (or File) read by range: each read slices the Blob and copies just that range into a
 * fresh ArrayBuffer, so a multi-gigabyte model file is never held in memory whole.
 */
export function blobSource(blob: Blob, name = "<blob>"): ByteSource {
  return {
    name,
    size: blob.size,
    async read(offset, length) {
      if (offset < 0 || offset + length > blob.size) {
        throw new PeftError("FILE_TRUNCATED", `${name}: read of ${length} bytes at ${offset} is past the end (${blob.size} bytes)`);
      }
      let buf: ArrayBuffer;
      try {
        buf = await blob.slice(offset, offset + length).arrayBuffer();
      } catch (e) {
        // A File changed or removed on disk after it was picked.
        throw new PeftError("FILE_READ_FAILED", `${name}: cannot read ${length} bytes at ${offset}: ${(e as Error).message}`, { cause: e });
      }
      if (buf.byteLength !== length) throw new PeftError("FILE_TRUNCATED", `${name}: file ended while reading at ${offset + buf.byteLength}`);
      return new Uint8Array(buf);
    },
    close: () => Promise.resolve(),
  };
}

export function memorySource(bytes: Uint8Array, name = "<memory>"): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    read(offset, length) {
      if (offset < 0 || offset + length > bytes.byteLength) {
        return Promise.reject(
          new PeftError("FILE_TRUNCATED", `${name}: read of ${length} bytes at ${offset} is past the end (${bytes.byteLength} bytes)`),
        );
      }
      // Copy so callers own aligned memory (typed-array views need alignment).
      return Promise.resolve(bytes.slice(offset, offset + length));
    },
    close: () => Promise.resolve(),
  };
}

export async function fileSource(path: string): Promise<ByteSource> {
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    throw new PeftError("FILE_NOT_FOUND", `model file not found: ${path}`, { cause: e });
  }
  if (!info.isFile()) throw new PeftError("FILE_NOT_FOUND", `not a file: ${path}`);
  const handle = await open(path, "r");
  return {
    name: path,
    size: info.size,
    async read(offset, length) {
      if (offset < 0 || offset + length > info.size) {
        throw new PeftError("FILE_TRUNCATED", `${path}: read of ${length} bytes at ${offset} is past the end (${info.size} bytes)`);
      }
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw new PeftError("FILE_TRUNCATED", `${path}: file ended while reading at ${offset + done}`);
        done += bytesRead;
      }
      return out;
    },
    close: () => handle.close(),
  };
}

/** Writes a file atomically: temp file beside it, then rename, so a crash never leaves half a file. */
export async function writeFileAtomic(path: string, chunks: Uint8Array[] | Uint8Array): Promise<void> {
  const parts = chunks instanceof Uint8Array ? [chunks] : chunks;
  const tmp = `${path}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}.tmp`;
  try {
    const h = await open(tmp, "w");
    try {
      for (const p of parts) await h.write(p, 0, p.byteLength);
      await h.sync();
    } finally {
      await h.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => {});
    if (e instanceof PeftError) throw e;
    throw new PeftError("WRITE_FAILED", `cannot write ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * A pause for long synchronous work done in chunks: awaiting it lets timers and I/O (a server's
 * other requests) run, but only once `everyMs` of work has passed since the last pause, so short
 * work pays nothing.
 */
export function eventLoopYielder(everyMs = 20): () => Promise<void> {
  let last = performance.now();
  return async () => {
    if (performance.now() - last < everyMs) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
    last = performance.now();
  };
}

/** IEEE half -> float, for F16 tensors. */
export function f16ToF32Array(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) dst[i] = f16ToF32(src[i]);
  return dst;
}

export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** float -> IEEE half (round to nearest even) for a whole array. */
export function f32ToF16Array(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) dst[i] = f32ToF16(src[i]);
  return dst;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);
/** float -> IEEE half with round-to-nearest-even. */
export function f32ToF16(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}
