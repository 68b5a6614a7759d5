/**
 * safetensors reader and writer, written to the spec (huggingface/safetensors README):
 *   u64 LE header length N, N bytes of UTF-8 JSON header, then the data section.
 *   Header: { "__metadata__"?: {string: string}, name: {dtype, shape, data_offsets: [begin, end]} }
 *   with offsets relative to the data section; tensors cover it contiguously (no holes, no overlaps).
 * The reader parses only the header and reads tensors on demand from a ByteSource.
 */
import { PeftError } from "../errors.ts";
import { type ByteInput, type ByteSource, f16ToF32Array, openByteSource, writeFileAtomic } from "./bytes.ts";

export type SafetensorsDType = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL" | "U16" | "U32" | "U64";

export const SAFETENSORS_DTYPE_SIZE: Record<SafetensorsDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, U16: 2, U32: 4, U64: 8,
};

export interface SafetensorsInfo {
  dtype: SafetensorsDType;
  shape: number[];
  byteLength: number;
  /** Absolute byte offset of the tensor's data in the file. */
  fileOffset: number;
}

export interface SafetensorsFile {
  name: string;
  tensors: Map<string, SafetensorsInfo>;
  metadata: Record<string, string>;
  /** Raw little-endian bytes of a tensor (8-byte aligned copy). */
  read(name: string): Promise<Uint8Array>;
  /** F32/F16/BF16/F64 tensors widened or narrowed to f32; other dtypes are an error. */
  readF32(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

export interface SafetensorsWriteTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  data: ArrayBufferView;
}

/**
 * Bounds on what a header may declare, checked before the header JSON is parsed so a hostile
 * file costs neither memory nor time: the header bytes, its tensor entries, and the size and
 * entry count of `__metadata__`.
 */
export interface SafetensorsLimits {
  maxHeaderBytes: number;
  maxTensors: number;
  maxMetadataBytes: number;
  maxMetadataEntries: number;
}

/** Model files: the reference implementation's 100 MB header cap; shards hold a few thousand tensors. */
export const MODEL_SAFETENSORS_LIMITS: SafetensorsLimits = {
  maxHeaderBytes: 100_000_000,
  maxTensors: 200_000,
  maxMetadataBytes: 16 << 20,
  maxMetadataEntries: 10_000,
};

/** Adapters are far smaller: a 70B all-linear LoRA has ~1,100 tensors and a ~200 KB header. */
export const ADAPTER_SAFETENSORS_LIMITS: SafetensorsLimits = {
  maxHeaderBytes: 16 << 20,
  maxTensors: 65_536,
  maxMetadataBytes: 1 << 20,
  maxMetadataEntries: 1024,
};

function isDType(v: unknown): v is SafetensorsDType {
  return typeof v === "string" && Object.hasOwn(SAFETENSORS_DTYPE_SIZE, v);
}

function bad(file: string, msg: string): PeftError {
  return new PeftError("SAFETENSORS_BAD_HEADER", `${file}: ${msg}`);
}

interface ParsedHeader {
  tensors: Map<string, SafetensorsInfo>;
  metadata: Record<string, string>;
}

/**
 * Validates a decoded header against the data section size and returns tensor infos.
 * `dataStart` is the absolute file offset of the data section.
 */
function parseHeaderJson(text: string, file: string, dataStart: number, dataSize: number, limits: SafetensorsLimits): ParsedHeader {
  // The reference reader refuses a header that does not start with "{" (InvalidHeaderStart).
  if (text[0] !== "{") throw bad(file, `header must start with "{", got ${JSON.stringify(text.slice(0, 16))}`);
  // Counted before JSON.parse, which would hide duplicates and build every entry first.
  const top = topLevelEntries(text, file);
  const seen = new Set<string>();
  for (const e of top) {
    if (seen.has(e.key)) throw bad(file, `duplicate tensor name ${e.key} in header`);
    seen.add(e.key);
  }
  const meta = top.find((e) => e.key === "__metadata__");
  const nTensors = top.length - (meta ? 1 : 0);
  if (nTensors > limits.maxTensors) throw bad(file, `header declares ${nTensors} tensors (limit ${limits.maxTensors})`);
  if (meta) {
    if (meta.end - meta.start > limits.maxMetadataBytes) {
      throw bad(file, `__metadata__ is ${meta.end - meta.start} bytes (limit ${limits.maxMetadataBytes})`);
    }
    const entries = topLevelEntries(text, file, meta.start, meta.end).length;
    if (entries > limits.maxMetadataEntries) throw bad(file, `__metadata__ has ${entries} entries (limit ${limits.maxMetadataEntries})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PeftError("SAFETENSORS_BAD_HEADER", `${file}: header is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw bad(file, `header must be a JSON object, got ${Array.isArray(json) ? "array" : json === null ? "null" : typeof json}`);
  }
  const metadata: Record<string, string> = {};
  const entries: { name: string; info: SafetensorsInfo; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (value === null || typeof value !== "object" || Array.isArray(value)) throw bad(file, `__metadata__ must be an object of strings`);
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== "string") throw bad(file, `__metadata__.${k} must be a string, got ${typeof v}`);
        metadata[k] = v;
      }
      continue;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw bad(file, `tensor ${name}: entry must be an object`);
    const { dtype, shape, data_offsets } = value as Record<string, unknown>;
    if (!isDType(dtype)) {
      throw bad(file, `tensor ${name}: unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(SAFETENSORS_DTYPE_SIZE).join(", ")})`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(file, `tensor ${name}: shape ${JSON.stringify(shape)} must be a list of non-negative integers`);
    }
    if (
      !Array.isArray(data_offsets) || data_offsets.length !== 2 ||
      !data_offsets.every((d) => Number.isSafeInteger(d) && d >= 0) || data_offsets[0] > data_offsets[1]
    ) {
      throw bad(file, `tensor ${name}: data_offsets ${JSON.stringify(data_offsets)} must be [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = data_offsets as [number, number];
    const expected = (shape as number[]).reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_SIZE[dtype];
    if (end - begin !== expected) {
      throw bad(file, `tensor ${name}: data_offsets span ${end - begin} bytes but ${dtype} shape [${shape}] needs ${expected}`);
    }
    if (end > dataSize) {
      throw new PeftError(
        "SAFETENSORS_TRUNCATED",
        `${file}: tensor ${name} data_offsets [${begin}, ${end}] run past the end of the data section (${dataSize} bytes)`,
      );
    }
    entries.push({ name, begin, end, info: { dtype, shape: [...shape], byteLength: expected, fileOffset: dataStart + begin } });
  }
  // Contiguity: sorted by begin, each tensor starts where the previous ended and the last ends the data.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of sorted) {
    if (e.begin < pos) throw bad(file, `tensor ${e.name}: data_offsets [${e.begin}, ${e.end}] overlap the previous tensor (ends at ${pos})`);
    if (e.begin > pos) throw bad(file, `tensor ${e.name}: data_offsets [${e.begin}, ${e.end}] leave a hole after byte ${pos}`);
    pos = e.end;
  }
  if (pos !== dataSize) throw bad(file, `data section has ${dataSize} bytes but tensors cover only ${pos} (trailing bytes)`);
  const tensors = new Map<string, SafetensorsInfo>();
  for (const e of entries) tensors.set(e.name, e.info);
  return { tensors, metadata };
}

/**
 * Top-level keys of the JSON object in text[from, to) with the span of each value, found by a
 * small scanner that allocates only the keys (JSON.parse hides duplicates and builds everything).
 */
function topLevelEntries(text: string, file: string, from = 0, to = text.length): { key: string; start: number; end: number }[] {
  const out: { key: string; start: number; end: number }[] = [];
  let depth = 0;
  let expectKey = false;
  let cur: { key: string; start: number; end: number } | undefined;
  for (let i = from; i < to; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x22 /* " */) {
      let j = i + 1;
      while (j < to && text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      if (depth === 1 && expectKey) {
        let key: string;
        try {
          key = JSON.parse(text.slice(i, j + 1));
        } catch {
          throw bad(file, `header is not valid JSON (bad key at character ${i})`);
        }
        out.push(cur = { key, start: -1, end: to });
      }
      expectKey = false;
      i = j;
    } else if (ch === 0x3a /* : */ && depth === 1 && cur && cur.start < 0) {
      cur.start = i + 1;
    } else if (ch === 0x7b /* { */ || ch === 0x5b /* [ */) {
      depth++;
      expectKey = ch === 0x7b && depth === 1;
    } else if (ch === 0x7d /* } */ || ch === 0x5d /* ] */) {
      if (depth === 1 && cur) cur.end = i;
      if (--depth === 0) break;
    } else if (ch === 0x2c /* , */ && depth === 1) {
      if (cur) cur.end = i;
      expectKey = true;
    }
  }
  return out;
}

/** Opens a safetensors file (path), bytes or a Blob / File; reads only the header now, tensor data on demand. */
export async function readSafetensors(
  input: ByteInput,
  name?: string,
  limits: SafetensorsLimits = MODEL_SAFETENSORS_LIMITS,
): Promise<SafetensorsFile> {
  let source: ByteSource;
  try {
    source = await openByteSource(input, name);
  } catch (e) {
    if (e instanceof PeftError && e.code === "FILE_NOT_FOUND") {
      throw new PeftError("FILE_NOT_FOUND", `safetensors file not found: ${input}`, { cause: e });
    }
    throw e;
  }
  try {
    return await open(source, limits);
  } catch (e) {
    await source.close();
    throw e;
  }
}

async function open(source: ByteSource, limits: SafetensorsLimits): Promise<SafetensorsFile> {
  const file = source.name;
  if (source.size < 8) {
    throw new PeftError("SAFETENSORS_TRUNCATED", `${file}: ${source.size} bytes is too short for the 8-byte header length`);
  }
  const lenBytes = await source.read(0, 8);
  const headerLen = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLen > BigInt(limits.maxHeaderBytes)) {
    throw new PeftError("SAFETENSORS_BAD_HEADER", `${file}: header length ${headerLen} is over the limit of ${limits.maxHeaderBytes} bytes`);
  }
  const n = Number(headerLen);
  if (8 + n > source.size) {
    throw new PeftError("SAFETENSORS_TRUNCATED", `${file}: header length ${n} runs past the end of the file (${source.size} bytes)`);
  }
  const headerBytes = await source.read(8, n);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch (e) {
    throw new PeftError("SAFETENSORS_BAD_HEADER", `${file}: header is not valid UTF-8`, { cause: e });
  }
  const dataStart = 8 + n;
  const { tensors, metadata } = parseHeaderJson(text, file, dataStart, source.size - dataStart, limits);

  const info = (tensorName: string) => {
    const t = tensors.get(tensorName);
    if (!t) throw new PeftError("SAFETENSORS_MISSING_TENSOR", `${file}: no tensor named ${tensorName}`);
    return t;
  };
  const read = async (tensorName: string) => {
    const t = info(tensorName);
    return await source.read(t.fileOffset, t.byteLength);
  };
  return {
    name: file,
    tensors,
    metadata,
    read,
    async readF32(tensorName) {
      const t = info(tensorName);
      const bytes = await source.read(t.fileOffset, t.byteLength);
      const { buffer, byteOffset, byteLength } = bytes;
      switch (t.dtype) {
        case "F32":
          return new Float32Array(buffer, byteOffset, byteLength / 4);
        case "F16":
          return f16ToF32Array(new Uint16Array(buffer, byteOffset, byteLength / 2));
        case "BF16": {
          const src = new Uint16Array(buffer, byteOffset, byteLength / 2);
          const bits = new Uint32Array(src.length);
          for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
          return new Float32Array(bits.buffer);
        }
        case "F64":
          return Float32Array.from(new Float64Array(buffer, byteOffset, byteLength / 8));
      }
      throw new PeftError(
        "SAFETENSORS_UNSUPPORTED_DTYPE",
        `${file}: tensor ${tensorName} has dtype ${t.dtype}, which cannot be read as floats (supported: F32, F16, BF16, F64)`,
      );
    },
    close: () => source.close(),
  };
}

/**
 * Serialises tensors (in the given order) to safetensors bytes: [length, header, data...].
 * The header is padded with spaces so the data section starts at an 8-byte multiple.
 */
export function encodeSafetensors(tensors: SafetensorsWriteTensor[], metadata?: Record<string, string>): Uint8Array[] {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new PeftError("SAFETENSORS_BAD_INPUT", `metadata ${k}: value must be a string, got ${typeof v}`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  const parts: Uint8Array[] = [];
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === "__metadata__" || seen.has(t.name)) {
      throw new PeftError("SAFETENSORS_BAD_INPUT", `tensor name ${t.name} is ${seen.has(t.name) ? "duplicated" : "reserved"}`);
    }
    seen.add(t.name);
    if (!isDType(t.dtype)) throw new PeftError("SAFETENSORS_BAD_INPUT", `tensor ${t.name}: unknown dtype ${t.dtype}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new PeftError("SAFETENSORS_BAD_INPUT", `tensor ${t.name}: shape [${t.shape}] must be non-negative integers`);
    }
    const expected = t.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_SIZE[t.dtype];
    if (t.data.byteLength !== expected) {
      throw new PeftError(
        "SAFETENSORS_BAD_INPUT",
        `tensor ${t.name}: ${t.dtype} shape [${t.shape}] needs ${expected} bytes but data has ${t.data.byteLength}`,
      );
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
    parts.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil((8 + json.byteLength) / 8) * 8 - 8;
  const head = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return [head, ...parts];
}

/** Writes a safetensors file atomically (temp file + rename). */
export async function writeSafetensors(path: string, tensors: SafetensorsWriteTensor[], metadata?: Record<string, string>): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}
