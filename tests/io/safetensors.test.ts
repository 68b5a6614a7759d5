import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PeftError } from "../../src/errors.ts";
import { encodeSafetensors, readSafetensors, type SafetensorsWriteTensor, writeSafetensors } from "../../src/io/safetensors.ts";
import { randn } from "../helpers.ts";

const FIXTURES = new URL("../fixtures/safetensors/", import.meta.url).pathname;
const SMALL = `${FIXTURES}small.safetensors`;

interface Expected {
  metadata: Record<string, string>;
  tensors: Record<string, { dtype: string; shape: number[]; values: number[] }>;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

/** A safetensors file from raw header text and data bytes (for corrupting on purpose). */
function rawFile(headerText: string, data: Uint8Array = new Uint8Array(0), headerLen?: bigint): Uint8Array {
  const h = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + h.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, headerLen ?? BigInt(h.byteLength), true);
  out.set(h, 8);
  out.set(data, 8 + h.byteLength);
  return out;
}

async function rejectsWith(p: Promise<unknown>, code: string, ...parts: (string | RegExp)[]) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof PeftError, `expected PeftError, got ${e}`);
    assert.equal(e.code, code, e.message);
    for (const part of parts) {
      if (typeof part === "string") assert.ok(e.message.includes(part), `"${e.message}" should mention "${part}"`);
      else assert.match(e.message, part);
    }
    return true;
  });
}

Deno.test("safetensors: reads a file written by an independent producer (torch + spec)", async () => {
  const expected: Expected = JSON.parse(await readFile(`${FIXTURES}small.expected.json`, "utf8"));
  const f = await readSafetensors(SMALL);
  try {
    assert.deepEqual(f.metadata, expected.metadata);
    assert.deepEqual([...f.tensors.keys()].sort(), Object.keys(expected.tensors).sort());
    for (const [name, e] of Object.entries(expected.tensors)) {
      const info = f.tensors.get(name)!;
      assert.equal(info.dtype, e.dtype, name);
      assert.deepEqual(info.shape, e.shape, name);
      if (["F32", "F16", "BF16", "F64"].includes(e.dtype)) {
        const got = await f.readF32(name);
        assert.deepEqual([...got], e.values.map(Math.fround), name);
      }
    }
    const ids = await f.read("ids");
    assert.deepEqual([...new BigInt64Array(ids.buffer, ids.byteOffset, 6)].map(Number), expected.tensors.ids.values);
    assert.deepEqual([...await f.read("flags")], expected.tensors.flags.values);
    await rejectsWith(f.readF32("ids"), "SAFETENSORS_UNSUPPORTED_DTYPE", "ids", "I64");
    await rejectsWith(f.readF32("nope"), "SAFETENSORS_MISSING_TENSOR", "nope", SMALL);
  } finally {
    await f.close();
  }
});

Deno.test("safetensors: our writer's output reads back identically (fixture re-encoded, file and memory)", async () => {
  const src = await readSafetensors(SMALL);
  const tensors: SafetensorsWriteTensor[] = [];
  for (const [name, info] of src.tensors) tensors.push({ name, dtype: info.dtype, shape: info.shape, data: await src.read(name) });
  const dir = await mkdtemp(join(tmpdir(), "st-"));
  try {
    const path = join(dir, "copy.safetensors");
    await writeSafetensors(path, tensors, src.metadata);
    const bytes = new Uint8Array(await readFile(path));
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert.equal((8 + headerLen) % 8, 0, "data section starts at an 8-byte multiple");
    assert.equal(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)).trimEnd().at(-1), "}", "header padded with spaces");
    assert.deepEqual(bytes, concat(encodeSafetensors(tensors, src.metadata)), "file equals encoded bytes");
    for (const copy of [await readSafetensors(path), await readSafetensors(bytes, "copy")]) {
      assert.deepEqual(copy.metadata, src.metadata);
      assert.deepEqual(copy.tensors.size, src.tensors.size);
      for (const [name, info] of src.tensors) {
        assert.equal(copy.tensors.get(name)!.dtype, info.dtype);
        assert.deepEqual(copy.tensors.get(name)!.shape, info.shape);
        assert.deepEqual(await copy.read(name), await src.read(name), name);
      }
      await copy.close();
    }
  } finally {
    await src.close();
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("safetensors: f32 round trip is bit exact, no metadata key when none given", async () => {
  const a = randn(6 * 5, 7);
  const b = new Uint16Array([0x3c00, 0xc000, 0x7bff]);
  const bytes = concat(encodeSafetensors([
    { name: "a", dtype: "F32", shape: [6, 5], data: a },
    { name: "b", dtype: "F16", shape: [3], data: b },
  ]));
  const f = await readSafetensors(bytes);
  assert.deepEqual(f.metadata, {});
  assert.deepEqual(await f.readF32("a"), a);
  assert.deepEqual([...await f.readF32("b")], [1, -2, 65504]);
  assert.ok(!new TextDecoder().decode(bytes).includes("__metadata__"));
});

Deno.test("safetensors: writer rejects inconsistent tensors", () => {
  const t = (over: Partial<SafetensorsWriteTensor>): SafetensorsWriteTensor => ({
    name: "w", dtype: "F32", shape: [2, 2], data: new Float32Array(4), ...over,
  });
  const throwsCode = (fn: () => unknown, ...parts: string[]) =>
    assert.throws(fn, (e: unknown) => e instanceof PeftError && e.code === "SAFETENSORS_BAD_INPUT" && parts.every((p) => e.message.includes(p)));
  throwsCode(() => encodeSafetensors([t({ data: new Float32Array(3) })]), "w", "16", "12");
  throwsCode(() => encodeSafetensors([t({}), t({})]), "w");
  throwsCode(() => encodeSafetensors([t({ dtype: "F8" as never })]), "F8");
  throwsCode(() => encodeSafetensors([t({ shape: [-2, -2] })]), "w");
  throwsCode(() => encodeSafetensors([t({ name: "__metadata__" })]), "__metadata__");
});

Deno.test("safetensors: every malformed file gives its error, naming the file and the tensor/field", async () => {
  const data16 = new Uint8Array(16);
  const ok = (extra: Record<string, unknown> = {}) =>
    JSON.stringify({ w: { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] }, ...extra });
  const name = "bad.safetensors";
  const read = (bytes: Uint8Array) => readSafetensors(bytes, name);

  // Sanity: the template itself is valid.
  await (await read(rawFile(ok(), data16))).close();

  await rejectsWith(read(new Uint8Array(5)), "SAFETENSORS_TRUNCATED", name, "8-byte");
  await rejectsWith(read(rawFile(ok(), data16, 5000n)), "SAFETENSORS_TRUNCATED", name, "5000");
  await rejectsWith(read(rawFile(ok(), data16, 1n << 60n)), "SAFETENSORS_BAD_HEADER", name, "over the limit");
  await rejectsWith(read(rawFile("{not json", data16)), "SAFETENSORS_BAD_HEADER", name, "JSON");
  // Like the reference reader (InvalidHeaderStart): the header must be an object from its first byte.
  await rejectsWith(read(rawFile("[1,2]")), "SAFETENSORS_BAD_HEADER", name, 'must start with "{"', "[1,2]");
  await rejectsWith(read(rawFile("42")), "SAFETENSORS_BAD_HEADER", name, 'must start with "{"');
  await rejectsWith(read(rawFile('"w"')), "SAFETENSORS_BAD_HEADER", name, 'must start with "{"');
  await rejectsWith(read(rawFile(" " + ok(), data16)), "SAFETENSORS_BAD_HEADER", name, 'must start with "{"');
  const bin = rawFile(ok(), data16);
  bin[10] = 0xff; // invalid UTF-8 inside the header
  await rejectsWith(read(bin), "SAFETENSORS_BAD_HEADER", name, "UTF-8");
  await rejectsWith(read(rawFile(JSON.stringify({ w: 3 }))), "SAFETENSORS_BAD_HEADER", "tensor w");
  await rejectsWith(
    read(rawFile(JSON.stringify({ w: { dtype: "F8", shape: [2], data_offsets: [0, 2] } }), new Uint8Array(2))),
    "SAFETENSORS_BAD_HEADER", "tensor w", "dtype", "F8",
  );
  for (const shape of [[-1, 2], [1.5], "2", [2, null]]) {
    await rejectsWith(
      read(rawFile(JSON.stringify({ w: { dtype: "F32", shape, data_offsets: [0, 16] } }), data16)),
      "SAFETENSORS_BAD_HEADER", "tensor w", "shape",
    );
  }
  await rejectsWith(
    read(rawFile(JSON.stringify({ w: { dtype: "F32", shape: [3, 2], data_offsets: [0, 16] } }), data16)),
    "SAFETENSORS_BAD_HEADER", "tensor w", "16 bytes", "24",
  );
  for (const offs of [[0], [16, 0], [-16, 0], "0,16", [0, 16.5]]) {
    await rejectsWith(
      read(rawFile(JSON.stringify({ w: { dtype: "F32", shape: [2, 2], data_offsets: offs } }), data16)),
      "SAFETENSORS_BAD_HEADER", "tensor w", "data_offsets",
    );
  }
  // Offsets past the end of the data section (data truncated).
  await rejectsWith(read(rawFile(ok(), new Uint8Array(12))), "SAFETENSORS_TRUNCATED", name, "tensor w", "12 bytes");
  // Overlap, hole, trailing bytes.
  await rejectsWith(
    read(rawFile(ok({ v: { dtype: "F32", shape: [2], data_offsets: [8, 16] } }), new Uint8Array(16))),
    "SAFETENSORS_BAD_HEADER", "overlap",
  );
  await rejectsWith(
    read(rawFile(JSON.stringify({ w: { dtype: "F32", shape: [2], data_offsets: [8, 16] } }), data16)),
    "SAFETENSORS_BAD_HEADER", "tensor w", "hole",
  );
  await rejectsWith(read(rawFile(ok(), new Uint8Array(20))), "SAFETENSORS_BAD_HEADER", "trailing");
  // Duplicate names (JSON.parse would silently keep the last one).
  const w = '{"dtype":"F32","shape":[2],"data_offsets":[0,8]}';
  const w2 = '{"dtype":"F32","shape":[2],"data_offsets":[8,16]}';
  await rejectsWith(read(rawFile(`{"w":${w},"w":${w2}}`, data16)), "SAFETENSORS_BAD_HEADER", "duplicate", "w");
  // Keys nested inside a tensor entry that repeat a top-level name are not duplicates.
  await (await read(rawFile(`{"w":${w},"x":{"w":1,"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, data16))).close();
  // __metadata__ must be string -> string.
  await rejectsWith(read(rawFile(ok({ __metadata__: { a: 1 } }), data16)), "SAFETENSORS_BAD_HEADER", "__metadata__.a");
  await rejectsWith(read(rawFile(ok({ __metadata__: [] }), data16)), "SAFETENSORS_BAD_HEADER", "__metadata__");
});

Deno.test("safetensors: files on disk: missing file names the path, truncated copy is rejected", async () => {
  const dir = await mkdtemp(join(tmpdir(), "st-bad-"));
  try {
    const missing = join(dir, "nope.safetensors");
    await rejectsWith(readSafetensors(missing), "FILE_NOT_FOUND", missing);
    const full = new Uint8Array(await readFile(SMALL));
    const cut = join(dir, "cut.safetensors");
    await writeFile(cut, full.subarray(0, full.byteLength - 3));
    await rejectsWith(readSafetensors(cut), "SAFETENSORS_TRUNCATED", cut);
    await writeFile(cut, full.subarray(0, 100));
    await rejectsWith(readSafetensors(cut), "SAFETENSORS_TRUNCATED", cut, "header length");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
