import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PeftError } from "../../src/errors.ts";
import { encodeGGUF, GgufType, type GgufWriteTensor, readGGUF, writeGGUF } from "../../src/io/gguf.ts";
import { STORIES, isErr } from "../helpers.ts";

const original = new Uint8Array(await readFile(STORIES));

/** Byte position just after a length-prefixed GGUF string `s` (its first occurrence). */
function afterString(bytes: Uint8Array, s: string): number {
  const needle = new Uint8Array(8 + s.length);
  new DataView(needle.buffer).setBigUint64(0, BigInt(s.length), true);
  needle.set(new TextEncoder().encode(s), 8);
  outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
    return i + needle.length;
  }
  throw new Error(`string ${s} not found`);
}

/** Positions of a tensor info's fields (type and offset) in the header. */
function tensorInfoAt(bytes: Uint8Array, name: string, nDims: number) {
  const p = afterString(bytes, name);
  return { name: p - name.length, type: p + 4 + 8 * nDims, offset: p + 4 + 8 * nDims + 4 };
}

function concatParts(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

function patched(fn: (v: DataView, b: Uint8Array) => void): Uint8Array {
  const b = original.slice();
  fn(new DataView(b.buffer), b);
  return b;
}

Deno.test("gguf: reads stories260K's metadata, tensor infos and data", async () => {
  const g = await readGGUF(STORIES);
  try {
    assert.equal(g.version, 3);
    assert.equal(g.alignment, 32);
    assert.equal(g.get("general.architecture"), "llama");
    assert.equal(g.get("tokenizer.ggml.model"), "llama");
    const u32 = (k: string, v: number) => {
      assert.equal(g.metadata.get(k)!.type, GgufType.UINT32, k);
      assert.equal(g.get(k), v, k);
    };
    u32("llama.embedding_length", 64);
    u32("llama.feed_forward_length", 172);
    u32("llama.block_count", 5);
    u32("llama.attention.head_count", 8);
    u32("llama.attention.head_count_kv", 4);
    u32("llama.rope.dimension_count", 8);
    u32("llama.context_length", 2048);
    u32("tokenizer.ggml.bos_token_id", 1);
    assert.equal(g.metadata.get("llama.attention.layer_norm_rms_epsilon")!.type, GgufType.FLOAT32);
    assert.equal(g.get("llama.attention.layer_norm_rms_epsilon"), Math.fround(1e-5));
    const tokens = g.metadata.get("tokenizer.ggml.tokens")!;
    assert.equal(tokens.type, GgufType.ARRAY);
    assert.equal(tokens.arrayType, GgufType.STRING);
    const list = tokens.value as string[];
    assert.equal(list.length, 512);
    assert.deepEqual(list.slice(0, 4), ["<unk>", "<s>", "</s>", "<0x00>"]);
    assert.equal(g.metadata.get("tokenizer.ggml.scores")!.arrayType, GgufType.FLOAT32);
    assert.equal((g.get("tokenizer.ggml.scores") as number[]).length, 512);

    assert.equal(g.tensors.size, 3 + 5 * 9);
    assert.deepEqual(g.tensors.get("token_embd.weight")!.shape, [512, 64]);
    assert.deepEqual(g.tensors.get("output.weight")!.shape, [512, 64]);
    assert.deepEqual(g.tensors.get("output_norm.weight")!.shape, [64]);
    assert.deepEqual(g.tensors.get("blk.3.attn_q.weight")!.shape, [64, 64]);
    assert.deepEqual(g.tensors.get("blk.3.attn_k.weight")!.shape, [32, 64]);
    assert.deepEqual(g.tensors.get("blk.0.ffn_down.weight")!.shape, [64, 172]);
    assert.deepEqual(g.tensors.get("blk.0.ffn_up.weight")!.shape, [172, 64]);
    let end = 0;
    for (const t of g.tensors.values()) {
      assert.equal(t.ggmlType, 0, `${t.name} is F32`);
      assert.equal(t.fileOffset % 32, 0, `${t.name} aligned`);
      assert.equal(t.byteLength, t.shape.reduce((a, b) => a * b, 1) * 4);
      end = Math.max(end, t.fileOffset + t.byteLength);
    }
    assert.equal(end, original.byteLength, "the last tensor ends the file");
    // Data: the bytes at the tensor's offset, read independently of the reader.
    const info = g.tensors.get("blk.4.ffn_norm.weight")!;
    const data = await g.readF32("blk.4.ffn_norm.weight");
    assert.deepEqual(data, new Float32Array(original.slice(info.fileOffset, info.fileOffset + info.byteLength).buffer));
    assert.ok(data.every(Number.isFinite) && data.some((v) => v !== 0));
    await assert.rejects(g.readF32("nope.weight"), isErr("GGUF_MISSING_TENSOR", "nope.weight", STORIES));
  } finally {
    await g.close();
  }
  // Same file from memory.
  const m = await readGGUF(original, "stories-in-memory");
  const f = await readGGUF(STORIES);
  assert.deepEqual(await m.readF32("blk.2.attn_v.weight"), await f.readF32("blk.2.attn_v.weight"));
  await m.close();
  await f.close();
});

Deno.test("gguf: encodeGGUF / writeGGUF round trip keeps every metadata value, type and tensor byte", async () => {
  const g = await readGGUF(STORIES);
  const dir = await mkdtemp(join(tmpdir(), "gguf-rt-"));
  try {
    const tensors: GgufWriteTensor[] = [];
    for (const t of g.tensors.values()) tensors.push({ name: t.name, shape: t.shape, data: await g.readF32(t.name) });
    const path = join(dir, "copy.gguf");
    await writeGGUF(path, { metadata: g.metadata, tensors });
    const parts = encodeGGUF({ metadata: g.metadata, tensors });
    const encoded = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let o = 0;
    for (const p of parts) {
      encoded.set(p, o);
      o += p.byteLength;
    }
    assert.deepEqual(new Uint8Array(await readFile(path)), encoded, "file equals encoded bytes");
    for (const copy of [await readGGUF(path), await readGGUF(encoded)]) {
      assert.equal(copy.version, 3);
      assert.deepEqual([...copy.metadata.keys()], [...g.metadata.keys()]);
      for (const [k, e] of g.metadata) assert.deepEqual(copy.metadata.get(k), e, k);
      assert.deepEqual([...copy.tensors.keys()], [...g.tensors.keys()]);
      for (const t of g.tensors.values()) {
        const c = copy.tensors.get(t.name)!;
        assert.deepEqual([c.shape, c.ggmlType, c.byteLength], [t.shape, t.ggmlType, t.byteLength], t.name);
        assert.deepEqual(await copy.readF32(t.name), await g.readF32(t.name), t.name);
      }
      await copy.close();
    }
  } finally {
    await g.close();
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("gguf: corrupted copies in memory each give their error", async () => {
  const name = "corrupt.gguf";
  const open = (b: Uint8Array) => readGGUF(b, name);
  // Truncation in the fixed header, the metadata, the tensor infos and the data.
  const infos = tensorInfoAt(original, "blk.2.attn_q.weight", 2).name;
  for (const cut of [3, 10, 20, 100, 5000, infos, infos + 10]) {
    await assert.rejects(open(original.slice(0, cut)), isErr("GGUF_TRUNCATED", name, "truncated"), `cut at ${cut}`);
  }
  await assert.rejects(open(original.slice(0, original.byteLength - 100)), isErr("GGUF_TRUNCATED", name, "blk.4.ffn_norm.weight", "past the end"));
  await assert.rejects(open(patched((_, b) => (b[0] = 0x58))), isErr("GGUF_BAD_MAGIC", name, "magic"));
  await assert.rejects(open(new TextEncoder().encode("PK\x03\x04 not a gguf at all")), isErr("GGUF_BAD_MAGIC", name));
  for (const v of [1, 4, 0xffffffff]) {
    await assert.rejects(open(patched((d) => d.setUint32(4, v, true))), isErr("GGUF_BAD_VERSION", name, String(v)));
  }
  const ffnNorm = tensorInfoAt(original, "blk.4.ffn_norm.weight", 1);
  await assert.rejects(
    open(patched((d) => d.setBigUint64(ffnNorm.offset, BigInt(original.byteLength), true))),
    isErr("GGUF_TRUNCATED", name, "blk.4.ffn_norm.weight"),
  );
  await assert.rejects(open(patched((d) => d.setBigUint64(8, 1n << 40n, true))), isErr("GGUF_BAD_COUNT", name, "tensor count"));
  await assert.rejects(open(patched((d) => d.setBigUint64(16, 1n << 40n, true))), isErr("GGUF_BAD_COUNT", name, "metadata count"));
  const tokensCount = afterString(original, "tokenizer.ggml.tokens") + 8; // after value type and array type
  assert.equal(new DataView(original.buffer).getBigUint64(tokensCount, true), 512n, "located the tokens array length");
  await assert.rejects(
    open(patched((d) => d.setBigUint64(tokensCount, 1n << 40n, true))),
    isErr("GGUF_BAD_COUNT", name, "tokenizer.ggml.tokens"),
  );
  // A plausible but too large array length makes the reader parse later bytes as strings: it must
  // stop with a clear error (an absurd string length or the end of the file), never hang or crash.
  await assert.rejects(open(patched((d) => d.setBigUint64(tokensCount, 1_000_000n, true))), (e: unknown) => {
    assert.ok(e instanceof PeftError && ["GGUF_TRUNCATED", "GGUF_BAD_COUNT"].includes(e.code) && e.message.includes(name), String(e));
    return true;
  });
  const embd = tensorInfoAt(original, "token_embd.weight", 2);
  await assert.rejects(
    open(patched((d) => d.setBigUint64(embd.offset, d.getBigUint64(embd.offset, true) + 4n, true))),
    isErr("GGUF_BAD_TENSOR", name, "token_embd.weight", "not aligned"),
  );
  await assert.rejects(open(patched((d) => d.setUint32(embd.type, 99, true))), isErr("GGUF_UNSUPPORTED_TYPE", name, "99", "token_embd.weight"));
  await assert.rejects(open(patched((d) => d.setUint32(embd.type - 4 - 16, 7, true))), isErr("GGUF_BAD_TENSOR", name, "token_embd.weight", "7 dims"));
  // Rows must hold whole blocks: 64-wide rows cannot be Q4_K (blocks of 256), as in ggml.
  await assert.rejects(open(patched((d) => d.setUint32(embd.type, 12, true))), isErr("GGUF_BAD_TENSOR", name, "token_embd.weight", "not a multiple of Q4_K's block of 256"));
  // A smaller type changes the tensor's data size, so every later tensor's offset is off (llama.cpp
  // requires offsets in order, padded, without gaps or overlaps).
  await assert.rejects(open(patched((d) => d.setUint32(embd.type, 8, true))), isErr("GGUF_BAD_TENSOR", name, "expected", "without gaps or overlaps"));
  // On the last tensor a smaller type leaves bytes that belong to no tensor.
  const last = tensorInfoAt(original, "blk.4.ffn_norm.weight", 1);
  await assert.rejects(open(patched((d) => d.setUint32(last.type, 8, true))), isErr("GGUF_TRAILING_DATA", name, "belong to no tensor"));
  // A type of the same size we size but do not decode (I32) opens but cannot be read as f32.
  const i32 = await open(patched((d) => d.setUint32(last.type, 26, true)));
  assert.equal(i32.tensors.get("blk.4.ffn_norm.weight")!.byteLength, 64 * 4);
  await assert.rejects(i32.readF32("blk.4.ffn_norm.weight"), isErr("GGUF_UNSUPPORTED_TYPE", "cannot decode tensor type I32", "blk.4.ffn_norm.weight"));
  assert.equal((await i32.readF32("blk.0.attn_q.weight")).length, 64 * 64, "other tensors still read");
  await i32.close();
  // So does a block-quantized one (Q8_1) in a file laid out for it.
  const q81 = await open(concatParts(encodeGGUF({ metadata: {}, tensors: [{ name: "w", shape: [2, 64], data: new Uint8Array(2 * 2 * 36), ggmlType: 9 }] })));
  assert.equal(q81.tensors.get("w")!.byteLength, 2 * 2 * 36);
  await assert.rejects(q81.readF32("w"), isErr("GGUF_UNSUPPORTED_TYPE", "cannot decode tensor type Q8_1", "w"));
  await q81.close();
  // Duplicate tensor names.
  const q1 = tensorInfoAt(original, "blk.1.attn_q.weight", 2).name;
  await assert.rejects(open(patched((_, b) => (b[q1 + 4] = "0".charCodeAt(0)))), isErr("GGUF_BAD_TENSOR", name, "duplicate", "blk.0.attn_q.weight"));
  // Unknown metadata value type.
  await assert.rejects(open(patched((d) => d.setUint32(afterString(original, "general.architecture"), 42, true))), isErr("GGUF_BAD_VALUE_TYPE", name, "general.architecture"));
});

Deno.test("gguf: corrupted copies on disk name the file; a missing file names its path", async () => {
  const dir = await mkdtemp(join(tmpdir(), "gguf-bad-"));
  try {
    const missing = join(dir, "missing.gguf");
    await assert.rejects(readGGUF(missing), isErr("FILE_NOT_FOUND", missing));
    await assert.rejects(readGGUF(dir), isErr("FILE_NOT_FOUND", dir));
    const cases: [string, Uint8Array, string, string][] = [
      ["header.gguf", original.slice(0, 12), "GGUF_TRUNCATED", "truncated"],
      ["meta.gguf", original.slice(0, 2000), "GGUF_TRUNCATED", "truncated"],
      ["data.gguf", original.slice(0, original.byteLength - 1), "GGUF_TRUNCATED", "past the end"],
      ["magic.gguf", patched((_, b) => b.set([0, 0, 0, 0])), "GGUF_BAD_MAGIC", "magic"],
      ["version.gguf", patched((d) => d.setUint32(4, 9, true)), "GGUF_BAD_VERSION", "9"],
    ];
    for (const [file, bytes, code, part] of cases) {
      const path = join(dir, file);
      await writeFile(path, bytes);
      await assert.rejects(readGGUF(path), isErr(code, path, part), file);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
