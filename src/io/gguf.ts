/**
 * GGUF v2/v3 reader and writer, written to the spec (ggml/docs/gguf.md):
 *   u32 magic "GGUF", u32 version, u64 tensor_count, u64 kv_count,
 *   kv_count x (string key, u32 value_type, value),
 *   tensor_count x (string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset),
 *   padding to `general.alignment` (default 32), tensor data.
 * Dims are listed innermost-first; `shape` here is PyTorch order (outermost-first).
 * Tensor data is read lazily per tensor from the byte source.
 */
import { PeftError } from "../errors.ts";
import { type ByteInput, type ByteSource, f16ToF32Array, openByteSource, writeFileAtomic } from "./bytes.ts";
import { dequantizeGgml, ggmlTensorBytes } from "./ggml_quants.ts";

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian

export enum GgufType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}

/** ggml tensor types (ggml.h `enum ggml_type`); sizes and decoders are in ggml_quants.ts. */
export const GGML_TYPE_NAMES: Record<number, string> = {
  0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
  10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
  17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS",
  24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0",
};
export const GGML_F32 = 0;
export const GGML_F16 = 1;
export const GGML_BF16 = 30;

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufScalar[];

export interface GgufMetaEntry {
  type: GgufType;
  /** For arrays: the element type. */
  arrayType?: GgufType;
  value: GgufValue;
}

export interface GgufTensorInfo {
  name: string;
  /** PyTorch order: outermost dimension first (GGUF's dims reversed). */
  shape: number[];
  ggmlType: number;
  /** Byte offset of the data from the start of the file. */
  fileOffset: number;
  byteLength: number;
}

/** A tensor's raw ggml bytes (block-quantized types as stored), with its info. */
export interface GgufRawTensor extends GgufTensorInfo {
  bytes: Uint8Array;
}

export interface GgufFile {
  source: ByteSource;
  version: number;
  alignment: number;
  metadata: Map<string, GgufMetaEntry>;
  tensors: Map<string, GgufTensorInfo>;
  /** Metadata value by key, or undefined. */
  get<T extends GgufValue = GgufValue>(key: string): T | undefined;
  /** Tensor data as f32 (F32 read as-is, F16/BF16 widened, quantized types dequantized). */
  readF32(name: string): Promise<Float32Array>;
  /** Tensor data as stored (e.g. Q4_K blocks), for kernels that read the format itself. */
  readRaw(name: string): Promise<GgufRawTensor>;
  close(): Promise<void>;
}

const MAX_COUNT = 1 << 26; // absurd-count guard for tensors, kvs and array lengths
const MAX_DIMS = 4;
/** ggml's GGML_MAX_NAME: llama.cpp refuses tensor names of this many bytes or more. */
const MAX_NAME_BYTES = 64;
/** Fewest bytes one entry can take on disk, so a count can be checked against the bytes left. */
const MIN_KV_BYTES = 8 + 4 + 1; // key length, value type, a 1-byte value
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8; // name length, n_dims, one dim, type, offset
const SCALAR_BYTES: Partial<Record<GgufType, number>> = {
  [GgufType.UINT8]: 1, [GgufType.INT8]: 1, [GgufType.BOOL]: 1, [GgufType.UINT16]: 2, [GgufType.INT16]: 2,
  [GgufType.UINT32]: 4, [GgufType.INT32]: 4, [GgufType.FLOAT32]: 4, [GgufType.UINT64]: 8, [GgufType.INT64]: 8,
  [GgufType.FLOAT64]: 8, [GgufType.STRING]: 8,
};

class Cursor {
  pos = 0;
  private view: DataView;
  private decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  constructor(private bytes: Uint8Array, private file: string, private fileSize: number) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(n: number, what: string) {
    if (this.pos + n > this.bytes.byteLength) {
      // Either the buffer window is too small (caller retries with more) or the file ended.
      throw new NeedMore(this.pos + n, `${this.file}: truncated while reading ${what} at byte ${this.pos} (file has ${this.fileSize} bytes)`);
    }
  }
  u8() { this.need(1, "u8"); return this.view.getUint8(this.pos++); }
  i8() { this.need(1, "i8"); return this.view.getInt8(this.pos++); }
  u16() { this.need(2, "u16"); const v = this.view.getUint16(this.pos, true); this.pos += 2; return v; }
  i16() { this.need(2, "i16"); const v = this.view.getInt16(this.pos, true); this.pos += 2; return v; }
  u32() { this.need(4, "u32"); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  i32() { this.need(4, "i32"); const v = this.view.getInt32(this.pos, true); this.pos += 4; return v; }
  f32() { this.need(4, "f32"); const v = this.view.getFloat32(this.pos, true); this.pos += 4; return v; }
  f64() { this.need(8, "f64"); const v = this.view.getFloat64(this.pos, true); this.pos += 8; return v; }
  u64big() { this.need(8, "u64"); const v = this.view.getBigUint64(this.pos, true); this.pos += 8; return v; }
  i64big() { this.need(8, "i64"); const v = this.view.getBigInt64(this.pos, true); this.pos += 8; return v; }
  /**
   * u64 that must fit a JS number and be at most `max`; with `minBytesEach`, a count of entries
   * that must also fit in the bytes left in the file (so nothing is sized by a count the file
   * cannot hold).
   */
  count(what: string, max = MAX_COUNT, minBytesEach = 0): number {
    const v = this.u64big();
    if (v > BigInt(max)) throw new PeftError("GGUF_BAD_COUNT", `${this.file}: absurd ${what} ${v} (limit ${max})`);
    const left = this.fileSize - this.pos;
    if (minBytesEach > 0 && Number(v) * minBytesEach > left) {
      throw new PeftError(
        "GGUF_TRUNCATED",
        `${this.file}: truncated or corrupt: ${what} ${v} needs at least ${Number(v) * minBytesEach} bytes but only ${left} remain in the file`,
      );
    }
    return Number(v);
  }
  string(what: string): string {
    const n = this.count(`length of ${what}`, this.fileSize, 1);
    this.need(n, what);
    const s = this.decoder.decode(this.bytes.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
}

class NeedMore extends Error {
  constructor(readonly upTo: number, readonly detail: string) { super(detail); }
}

function readScalar(c: Cursor, type: GgufType, key: string, file: string): GgufScalar {
  switch (type) {
    case GgufType.UINT8: return c.u8();
    case GgufType.INT8: return c.i8();
    case GgufType.UINT16: return c.u16();
    case GgufType.INT16: return c.i16();
    case GgufType.UINT32: return c.u32();
    case GgufType.INT32: return c.i32();
    case GgufType.FLOAT32: return c.f32();
    case GgufType.BOOL: return c.u8() !== 0;
    case GgufType.STRING: return c.string(`value of ${key}`);
    case GgufType.UINT64: { const v = c.u64big(); return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
    case GgufType.INT64: { const v = c.i64big(); return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
    case GgufType.FLOAT64: return c.f64();
  }
  throw new PeftError("GGUF_BAD_VALUE_TYPE", `${file}: metadata ${key} has unknown value type ${type}`);
}

function parseHeader(bytes: Uint8Array, file: string, fileSize: number) {
  const c = new Cursor(bytes, file, fileSize);
  const magic = c.u32();
  if (magic !== GGUF_MAGIC) {
    throw new PeftError("GGUF_BAD_MAGIC", `${file}: not a GGUF file (magic 0x${magic.toString(16).padStart(8, "0")}, expected "GGUF")`);
  }
  const version = c.u32();
  if (version !== 2 && version !== 3) {
    throw new PeftError("GGUF_BAD_VERSION", `${file}: unsupported GGUF version ${version} (supported: 2, 3)`);
  }
  const tensorCount = c.count("tensor count", MAX_COUNT, MIN_TENSOR_INFO_BYTES);
  const kvCount = c.count("metadata count", MAX_COUNT, MIN_KV_BYTES);
  const metadata = new Map<string, GgufMetaEntry>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata key #${i}`);
    // A second value for a key would silently replace the first (llama.cpp refuses it too).
    if (metadata.has(key)) throw new PeftError("GGUF_DUPLICATE_KEY", `${file}: metadata key ${key} appears twice`);
    const type = c.u32() as GgufType;
    if (type === GgufType.ARRAY) {
      const arrayType = c.u32() as GgufType;
      if (arrayType === GgufType.ARRAY) {
        throw new PeftError("GGUF_BAD_VALUE_TYPE", `${file}: nested arrays in ${key} are not supported`);
      }
      const elementBytes = SCALAR_BYTES[arrayType];
      if (elementBytes === undefined) throw new PeftError("GGUF_BAD_VALUE_TYPE", `${file}: metadata ${key} is an array of unknown value type ${arrayType}`);
      const n = c.count(`array length of ${key}`, MAX_COUNT, elementBytes);
      const arr: GgufScalar[] = new Array(n);
      for (let j = 0; j < n; j++) arr[j] = readScalar(c, arrayType, key, file);
      metadata.set(key, { type, arrayType, value: arr });
    } else {
      metadata.set(key, { type, value: readScalar(c, type, key, file) });
    }
  }
  const alignEntry = metadata.get("general.alignment");
  // llama.cpp reads the alignment as a u32 (gguf_get_val_u32 asserts the type).
  if (alignEntry && alignEntry.type !== GgufType.UINT32) {
    throw new PeftError("GGUF_BAD_ALIGNMENT", `${file}: general.alignment must be a UINT32, got value type ${GgufType[alignEntry.type] ?? alignEntry.type}`);
  }
  const alignment = alignEntry ? Number(alignEntry.value) : 32;
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new PeftError("GGUF_BAD_ALIGNMENT", `${file}: general.alignment ${alignEntry?.value} is not a power of two`);
  }
  const infos: { name: string; shape: number[]; ggmlType: number; offset: number }[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`tensor name #${i}`);
    if (new TextEncoder().encode(name).byteLength >= MAX_NAME_BYTES) {
      throw new PeftError("GGUF_BAD_TENSOR", `${file}: tensor name ${JSON.stringify(name.slice(0, 80))} is ${name.length} bytes or more (limit ${MAX_NAME_BYTES - 1})`);
    }
    const nDims = c.u32();
    if (nDims < 1 || nDims > MAX_DIMS) throw new PeftError("GGUF_BAD_TENSOR", `${file}: tensor ${name} has ${nDims} dims (1..${MAX_DIMS})`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.count(`dim ${d} of ${name}`, 2 ** 40));
    if (dims.reduce((a, b) => a * b, 1) > Number.MAX_SAFE_INTEGER) {
      throw new PeftError("GGUF_BAD_TENSOR", `${file}: tensor ${name} dims [${dims}] have more elements than can be addressed`);
    }
    const ggmlType = c.u32(); // sized (whole blocks per row) by ggmlTensorBytes below
    const offset = c.count(`data offset of ${name}`, Number.MAX_SAFE_INTEGER);
    infos.push({ name, shape: dims.reverse(), ggmlType, offset });
  }
  const dataStart = Math.ceil(c.pos / alignment) * alignment;
  return { version, metadata, alignment, infos, dataStart };
}

/**
 * Opens a GGUF file (path), GGUF bytes or a Blob / File, parsing the header; tensor data is read
 * on demand. `name` labels messages for bytes and Blobs (a File's own name by default).
 */
export async function readGGUF(input: ByteInput, name?: string): Promise<GgufFile> {
  const source = await openByteSource(input, name);
  try {
    return await parseSource(source);
  } catch (e) {
    await source.close();
    throw e;
  }
}

async function parseSource(source: ByteSource): Promise<GgufFile> {
  const file = source.name;
  if (source.size < 4) {
    // Too short for the magic: a cut GGUF if what is there starts "GGUF", else not GGUF at all.
    const head = await source.read(0, source.size);
    if (!head.every((b, i) => b === "GGUF".charCodeAt(i))) {
      throw new PeftError("GGUF_BAD_MAGIC", `${file}: not a GGUF file (${source.size} bytes, not starting with "GGUF")`);
    }
  }
  // The header is parsed from a prefix of the file; grow the prefix until it fits.
  let window = Math.min(source.size, 1 << 20);
  let header;
  for (;;) {
    const bytes = await source.read(0, window);
    try {
      header = parseHeader(bytes, file, source.size);
      break;
    } catch (e) {
      if (!(e instanceof NeedMore)) throw e;
      if (window >= source.size) throw new PeftError("GGUF_TRUNCATED", e.detail);
      window = Math.min(source.size, Math.max(window * 2, e.upTo));
    }
  }
  const tensors = new Map<string, GgufTensorInfo>();
  // llama.cpp's reader (gguf_init_from_file) requires each tensor's data to start exactly where
  // the previous one's ends, padded to the alignment: in order, aligned, no gaps, no overlaps.
  let expectedOffset = 0;
  for (const t of header.infos) {
    if (tensors.has(t.name)) throw new PeftError("GGUF_BAD_TENSOR", `${file}: duplicate tensor name ${t.name}`);
    const byteLength = ggmlTensorBytes(t.ggmlType, t.shape, `${file}: tensor ${t.name}`, GGML_TYPE_NAMES[t.ggmlType]);
    if (t.offset % header.alignment !== 0) {
      throw new PeftError("GGUF_BAD_TENSOR", `${file}: tensor ${t.name} offset ${t.offset} is not aligned to ${header.alignment}`);
    }
    const fileOffset = header.dataStart + t.offset;
    if (fileOffset + byteLength > source.size) {
      throw new PeftError(
        "GGUF_TRUNCATED",
        `${file}: tensor ${t.name} data (${byteLength} bytes at ${fileOffset}) runs past the end of the file (${source.size} bytes)`,
      );
    }
    if (t.offset !== expectedOffset) {
      throw new PeftError(
        "GGUF_BAD_TENSOR",
        `${file}: tensor ${t.name} has data offset ${t.offset}, expected ${expectedOffset} ` +
          `(tensor data must follow the tensor infos in order, each padded to ${header.alignment} bytes, without gaps or overlaps)`,
      );
    }
    expectedOffset += Math.ceil(byteLength / header.alignment) * header.alignment;
    tensors.set(t.name, { name: t.name, shape: t.shape, ggmlType: t.ggmlType, fileOffset, byteLength });
  }
  // Bytes beyond the last tensor's (padded) data belong to no tensor: a sign that a tensor's
  // type or shape was changed so it reads fewer bytes than were written for it.
  const dataEnd = header.dataStart + expectedOffset;
  if (header.infos.length && source.size > dataEnd) {
    throw new PeftError("GGUF_TRAILING_DATA", `${file}: ${source.size - dataEnd} bytes after the last tensor's data belong to no tensor (file has ${source.size} bytes, tensor data ends at ${dataEnd})`);
  }
  const metadata = header.metadata;
  async function readRaw(name: string): Promise<GgufRawTensor> {
    const info = tensors.get(name);
    if (!info) throw new PeftError("GGUF_MISSING_TENSOR", `${file}: no tensor named ${name}`);
    return { ...info, bytes: await source.read(info.fileOffset, info.byteLength) };
  }
  return {
    source,
    version: header.version,
    alignment: header.alignment,
    metadata,
    tensors,
    get<T extends GgufValue>(key: string) {
      return metadata.get(key)?.value as T | undefined;
    },
    readRaw,
    async readF32(name: string) {
      const { bytes, ggmlType, shape } = await readRaw(name);
      if (ggmlType === GGML_F32) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      if (ggmlType === GGML_F16) return f16ToF32Array(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2));
      return dequantizeGgml(ggmlType, bytes, shape.reduce((a, b) => a * b, 1), `${file}: tensor ${name}`);
    },
    close: () => source.close(),
  };
}

// ---------------------------------------------------------------- writer

export interface GgufWriteTensor {
  name: string;
  /** PyTorch order (outermost first). */
  shape: number[];
  /** F32 or F16 data (F16 as raw half bits), or the bytes of `ggmlType` (e.g. Q8_0 blocks). */
  data: Float32Array | Uint16Array | Uint8Array;
  /** The ggml type of `data` when it is raw bytes (ggml_quants.ts GGML). */
  ggmlType?: number;
}

export interface GgufWriteInput {
  /** Entries keep their types; plain values are typed by `inferType`. */
  metadata: Map<string, GgufMetaEntry> | Record<string, GgufMetaEntry>;
  tensors: GgufWriteTensor[];
  alignment?: number;
}

class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  pos = 0;
  private enc = new TextEncoder();
  private grow(n: number) {
    if (this.pos + n <= this.buf.byteLength) return;
    let size = this.buf.byteLength * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf);
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number) { this.grow(1); this.view.setUint8(this.pos, v); this.pos += 1; }
  i8(v: number) { this.grow(1); this.view.setInt8(this.pos, v); this.pos += 1; }
  u16(v: number) { this.grow(2); this.view.setUint16(this.pos, v, true); this.pos += 2; }
  i16(v: number) { this.grow(2); this.view.setInt16(this.pos, v, true); this.pos += 2; }
  u32(v: number) { this.grow(4); this.view.setUint32(this.pos, v, true); this.pos += 4; }
  i32(v: number) { this.grow(4); this.view.setInt32(this.pos, v, true); this.pos += 4; }
  f32(v: number) { this.grow(4); this.view.setFloat32(this.pos, v, true); this.pos += 4; }
  f64(v: number) { this.grow(8); this.view.setFloat64(this.pos, v, true); this.pos += 8; }
  u64(v: number | bigint) { this.grow(8); this.view.setBigUint64(this.pos, BigInt(v), true); this.pos += 8; }
  i64(v: number | bigint) { this.grow(8); this.view.setBigInt64(this.pos, BigInt(v), true); this.pos += 8; }
  string(s: string) { const b = this.enc.encode(s); this.u64(b.byteLength); this.grow(b.byteLength); this.buf.set(b, this.pos); this.pos += b.byteLength; }
  pad(alignment: number) { const n = (alignment - (this.pos % alignment)) % alignment; this.grow(n); this.pos += n; }
  bytes() { return this.buf.slice(0, this.pos); }
}

function writeScalar(w: ByteWriter, type: GgufType, v: GgufScalar, key: string) {
  switch (type) {
    case GgufType.UINT8: return w.u8(Number(v));
    case GgufType.INT8: return w.i8(Number(v));
    case GgufType.UINT16: return w.u16(Number(v));
    case GgufType.INT16: return w.i16(Number(v));
    case GgufType.UINT32: return w.u32(Number(v));
    case GgufType.INT32: return w.i32(Number(v));
    case GgufType.FLOAT32: return w.f32(Number(v));
    case GgufType.BOOL: return w.u8(v ? 1 : 0);
    case GgufType.STRING: return w.string(String(v));
    case GgufType.UINT64: return w.u64(typeof v === "bigint" ? v : Number(v));
    case GgufType.INT64: return w.i64(typeof v === "bigint" ? v : Number(v));
    case GgufType.FLOAT64: return w.f64(Number(v));
  }
  throw new PeftError("GGUF_BAD_VALUE_TYPE", `metadata ${key}: cannot write value type ${type}`);
}

/** Serialises a GGUF v3 file to bytes (header, then aligned tensor data). */
export function encodeGGUF(input: GgufWriteInput): Uint8Array[] {
  const alignment = input.alignment ?? 32;
  const meta = input.metadata instanceof Map ? input.metadata : new Map(Object.entries(input.metadata));
  if (alignment !== 32) meta.set("general.alignment", { type: GgufType.UINT32, value: alignment });
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(input.tensors.length);
  w.u64(meta.size);
  for (const [key, e] of meta) {
    w.string(key);
    w.u32(e.type);
    if (e.type === GgufType.ARRAY) {
      const arr = e.value as GgufScalar[];
      w.u32(e.arrayType!);
      w.u64(arr.length);
      for (const v of arr) writeScalar(w, e.arrayType!, v, key);
    } else {
      writeScalar(w, e.type, e.value as GgufScalar, key);
    }
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of input.tensors) {
    if (t.data instanceof Uint8Array && t.ggmlType === undefined) {
      throw new PeftError("GGUF_BAD_TENSOR", `tensor ${t.name}: raw bytes need their ggmlType`);
    }
    const type = t.ggmlType ?? (t.data instanceof Float32Array ? GGML_F32 : GGML_F16);
    const bytes = ggmlTensorBytes(type, t.shape, `tensor ${t.name}`, GGML_TYPE_NAMES[type]);
    if (bytes !== t.data.byteLength) {
      throw new PeftError("GGUF_BAD_TENSOR", `tensor ${t.name}: shape [${t.shape}] of ${GGML_TYPE_NAMES[type]} needs ${bytes} bytes but data has ${t.data.byteLength}`);
    }
    w.string(t.name);
    w.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) w.u64(d);
    w.u32(type);
    w.u64(offset);
    offsets.push(offset);
    offset += Math.ceil(t.data.byteLength / alignment) * alignment;
  }
  w.pad(alignment);
  const parts: Uint8Array[] = [w.bytes()];
  for (const t of input.tensors) {
    parts.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    const pad = (alignment - (t.data.byteLength % alignment)) % alignment;
    if (pad) parts.push(new Uint8Array(pad));
  }
  return parts;
}

/** Writes a GGUF v3 file atomically. */
export async function writeGGUF(path: string, input: GgufWriteInput): Promise<void> {
  await writeFileAtomic(path, encodeGGUF(input));
}
