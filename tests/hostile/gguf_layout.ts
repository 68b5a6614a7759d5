/**
 * Where every field of a GGUF header lies, found by a walker written here independently of
 * src/io/gguf.ts (so a reader bug cannot hide in its own test), plus helpers that make hostile
 * copies of stories260K: in-place patches of those fields, and re-encodings with changed
 * metadata or tensors (our writer lays out offsets as llama.cpp requires).
 */
import { readFile } from "node:fs/promises";
import { encodeGGUF, type GgufMetaEntry, GgufType, type GgufWriteTensor, readGGUF } from "../../src/io/gguf.ts";
import { STORIES } from "../helpers.ts";

export const STORIES_BYTES = new Uint8Array(await readFile(STORIES));

export interface MetaField {
  key: string;
  /** Offset of the key's length prefix. */
  at: number;
  /** Offset of the u32 value type. */
  typeAt: number;
  type: number;
  /** Offset of the value (for arrays: of the element type). */
  valueAt: number;
}

export interface TensorField {
  name: string;
  /** Offset of the name's length prefix. */
  at: number;
  nDimsAt: number;
  /** Offsets of each u64 dim, in file order (innermost first). */
  dimsAt: number[];
  typeAt: number;
  offsetAt: number;
}

export interface GgufLayout {
  meta: Map<string, MetaField>;
  tensors: TensorField[];
  /** End of the tensor infos (before the alignment padding). */
  headerEnd: number;
  dataStart: number;
}

const SCALAR: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

export function ggufLayout(b: Uint8Array): GgufLayout {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = 8;
  const u64 = () => {
    const x = Number(v.getBigUint64(p, true));
    p += 8;
    return x;
  };
  const u32 = () => {
    const x = v.getUint32(p, true);
    p += 4;
    return x;
  };
  const str = () => {
    const n = u64();
    const s = new TextDecoder().decode(b.subarray(p, p + n));
    p += n;
    return s;
  };
  const nTensors = u64(), nKv = u64();
  const meta = new Map<string, MetaField>();
  for (let i = 0; i < nKv; i++) {
    const at = p;
    const key = str();
    const typeAt = p;
    const type = u32();
    const valueAt = p;
    if (type === GgufType.STRING) str();
    else if (type === GgufType.ARRAY) {
      const et = u32();
      const n = u64();
      for (let j = 0; j < n; j++) {
        if (et === GgufType.STRING) str();
        else p += SCALAR[et];
      }
    } else p += SCALAR[type];
    meta.set(key, { key, at, typeAt, type, valueAt });
  }
  const tensors: TensorField[] = [];
  for (let i = 0; i < nTensors; i++) {
    const at = p;
    const name = str();
    const nDimsAt = p;
    const nDims = u32();
    const dimsAt: number[] = [];
    for (let d = 0; d < nDims; d++) {
      dimsAt.push(p);
      p += 8;
    }
    const typeAt = p;
    p += 4;
    const offsetAt = p;
    p += 8;
    tensors.push({ name, at, nDimsAt, dimsAt, typeAt, offsetAt });
  }
  const align = 32;
  return { meta, tensors, headerEnd: p, dataStart: Math.ceil(p / align) * align };
}

export const STORIES_LAYOUT = ggufLayout(STORIES_BYTES);

/** A copy of stories260K with `fn` applied to its bytes. */
export function patched(fn: (v: DataView, b: Uint8Array, l: GgufLayout) => void): Uint8Array {
  const b = STORIES_BYTES.slice();
  fn(new DataView(b.buffer), b, STORIES_LAYOUT);
  return b;
}

export interface StoriesParts {
  metadata: Map<string, GgufMetaEntry>;
  tensors: GgufWriteTensor[];
}

/** stories260K's metadata and tensors, for re-encoding with changes. */
export async function storiesParts(): Promise<StoriesParts> {
  const g = await readGGUF(STORIES_BYTES, "stories260K.gguf");
  const tensors: GgufWriteTensor[] = [];
  for (const t of g.tensors.values()) tensors.push({ name: t.name, shape: [...t.shape], data: (await g.readF32(t.name)).slice() });
  const metadata = new Map(g.metadata);
  await g.close();
  return { metadata, tensors };
}

/** Re-encodes stories260K after `fn` changed its parts (a fresh copy each call). */
export async function reencoded(fn: (p: StoriesParts) => void, alignment?: number): Promise<Uint8Array> {
  const p = await storiesParts();
  fn(p);
  const parts = encodeGGUF({ metadata: p.metadata, tensors: p.tensors, alignment });
  const out = new Uint8Array(parts.reduce((n, x) => n + x.byteLength, 0));
  let o = 0;
  for (const x of parts) {
    out.set(x, o);
    o += x.byteLength;
  }
  return out;
}

export const u32 = (value: number): GgufMetaEntry => ({ type: GgufType.UINT32, value });
export const f32 = (value: number): GgufMetaEntry => ({ type: GgufType.FLOAT32, value });
