/**
 * Issue #17 findings 1-4: hostile GGUF files are refused at load, before anything is sized by
 * them or uploaded, with one PeftError naming the file and the key or tensor; the unchanged
 * file still loads and gives its outputs.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PeftError } from "../../src/errors.ts";
import { GgufType } from "../../src/io/gguf.ts";
import { loadModel } from "../../src/api/model.ts";
import { testGpu } from "../helpers.ts";
import { f32, patched, reencoded, STORIES_BYTES, STORIES_LAYOUT } from "./gguf_layout.ts";

const dir = await mkdtemp(join(tmpdir(), "hostile-gguf-"));
let n = 0;

/** Writes the bytes to a file and loads them as a model; returns the path and the result. */
async function load(bytes: Uint8Array) {
  const path = join(dir, `case-${n++}.gguf`);
  await writeFile(path, bytes);
  return { path, result: loadModel(path, { gpu: await testGpu() }) };
}

async function refused(bytes: Uint8Array, code: string, ...mentions: string[]): Promise<PeftError> {
  const { path, result } = await load(bytes);
  let err: unknown;
  await result.then((m) => m.close(), (e) => err = e);
  assert.ok(err instanceof PeftError, `expected a PeftError, got ${err}`);
  assert.equal(err.code, code, err.message);
  for (const m of [path, ...mentions]) assert.ok(err.message.includes(m), `"${err.message}" should name ${m}`);
  return err;
}

const meta = (key: string) => STORIES_LAYOUT.meta.get(key)!;
const tensor = (name: string) => STORIES_LAYOUT.tensors.find((t) => t.name === name)!;

Deno.test("finding 1: zero-sized tensors never reach the GPU", async () => {
  const gpu = await testGpu();
  for (const shape of [[0], [0, 64], [64, 0]]) {
    assert.throws(() => gpu.upload(new Float32Array(0), shape), (e) => e instanceof PeftError && e.code === "BAD_SHAPE" && e.message.includes("no elements"));
    assert.throws(() => gpu.tensor(shape), (e) => e instanceof PeftError && e.code === "BAD_SHAPE");
  }
  // blk.0.attn_q.weight with dims [0, 64]: in place (its data no longer matches the offsets) ...
  await refused(patched((v) => v.setBigUint64(tensor("blk.0.attn_q.weight").dimsAt[1], 0n, true)), "GGUF_BAD_TENSOR", "blk.0.attn_k.weight");
  // ... and written consistently: the shape itself is refused, naming the tensor and the keys.
  const empty = await reencoded((p) => {
    const t = p.tensors.find((t) => t.name === "blk.0.attn_q.weight")!;
    t.shape = [0, 64];
    t.data = new Float32Array(0);
  });
  await refused(empty, "GGUF_BAD_TENSOR", "blk.0.attn_q.weight", "[0,64]", "expected [64,64]", "llama.attention.head_count");
});

Deno.test("finding 2: a block_count of 2^31 fails fast, sizing nothing", async () => {
  const t0 = performance.now();
  const heap0 = Deno.memoryUsage().rss;
  await refused(patched((v) => v.setUint32(meta("llama.block_count").valueAt, 2 ** 31, true)), "GGUF_BAD_KEY", "llama.block_count is 2147483648", "5 layers");
  // Counts the file cannot hold are refused before anything is allocated for them.
  await refused(patched((v) => v.setBigUint64(meta("tokenizer.ggml.tokens").valueAt + 4, 1n << 25n, true)), "GGUF_TRUNCATED", "tokenizer.ggml.tokens");
  await refused(patched((v) => v.setBigUint64(8, 1n << 25n, true)), "GGUF_TRUNCATED", "tensor count");
  assert.ok(performance.now() - t0 < 5000, `took ${performance.now() - t0} ms`);
  assert.ok(Deno.memoryUsage().rss - heap0 < 200e6, "no runaway allocation");
});

Deno.test("finding 3: bad metadata values and shapes are refused at load, naming the key or tensor", async () => {
  await refused(patched((v) => v.setUint32(meta("llama.feed_forward_length").valueAt, 100, true)), "GGUF_BAD_TENSOR", "blk.0.ffn_gate.weight", "[172,64]", "[100,64]", "llama.feed_forward_length");
  await refused(await reencoded((p) => p.metadata.set("llama.rope.freq_base", f32(NaN))), "GGUF_BAD_KEY", "llama.rope.freq_base");
  await refused(await reencoded((p) => p.metadata.set("llama.rope.freq_base", f32(Infinity))), "GGUF_BAD_KEY", "llama.rope.freq_base");
  await refused(patched((v) => v.setUint32(meta("llama.context_length").valueAt, 0, true)), "GGUF_BAD_KEY", "llama.context_length", "positive integer");
  await refused(await reencoded((p) => p.metadata.set("llama.context_length", f32(1e-42))), "GGUF_BAD_KEY", "llama.context_length", "must be an integer", "FLOAT32");
  await refused(patched((v) => v.setFloat32(meta("llama.attention.layer_norm_rms_epsilon").valueAt, NaN, true)), "GGUF_BAD_KEY", "llama.attention.layer_norm_rms_epsilon");
  await refused(patched((v) => v.setUint32(meta("llama.rope.dimension_count").valueAt, 7, true)), "GGUF_BAD_KEY", "llama.rope.dimension_count");
  await refused(patched((v) => v.setUint32(meta("tokenizer.ggml.bos_token_id").valueAt, 4000, true)), "TOKENIZER_BAD_VOCAB", "tokenizer.ggml.bos_token_id", "4000");
  await refused(await reencoded((p) => p.metadata.delete("llama.attention.layer_norm_rms_epsilon")), "GGUF_MISSING_KEY", "llama.attention.layer_norm_rms_epsilon");
});

Deno.test("finding 4: files that used to load with different outputs are refused", async () => {
  // block_count smaller than the layers present, or negative.
  await refused(patched((v) => v.setUint32(meta("llama.block_count").valueAt, 4, true)), "GGUF_BAD_KEY", "llama.block_count is 4");
  await refused(patched((v) => {
    v.setUint32(meta("llama.block_count").typeAt, GgufType.INT32, true);
    v.setInt32(meta("llama.block_count").valueAt, -1, true);
  }), "GGUF_BAD_KEY", "llama.block_count", "-1");
  // token_embd dims swapped ([64, 512] instead of [512, 64]: same bytes, other meaning).
  await refused(patched((v) => {
    const [a, b] = tensor("token_embd.weight").dimsAt;
    const x = v.getBigUint64(a, true);
    v.setBigUint64(a, v.getBigUint64(b, true), true);
    v.setBigUint64(b, x, true);
  }), "GGUF_BAD_TENSOR", "token_embd.weight", "[64,512]", "expected [512,64]");
  // Overlapping tensor data (offset 0 again) and an offset not aligned to general.alignment.
  await refused(patched((v) => v.setBigUint64(tensor("blk.0.attn_k.weight").offsetAt, 0n, true)), "GGUF_BAD_TENSOR", "blk.0.attn_k.weight", "without gaps or overlaps");
  await refused(patched((v) => v.setBigUint64(tensor("blk.0.attn_k.weight").offsetAt, v.getBigUint64(tensor("blk.0.attn_k.weight").offsetAt, true) + 4n, true)), "GGUF_BAD_TENSOR", "blk.0.attn_k.weight", "not aligned");
  // All-empty token strings.
  await refused(await reencoded((p) => {
    const t = p.metadata.get("tokenizer.ggml.tokens")!;
    p.metadata.set("tokenizer.ggml.tokens", { ...t, value: (t.value as string[]).map(() => "") });
  }), "TOKENIZER_BAD_VOCAB", "tokenizer.ggml.tokens[");
  // A tensor the architecture does not use (llama.cpp: "wrong number of tensors"). (rope_freqs.weight
  // of [ropeDim/2] is Llama 3's rope scaling now: tests/families/.)
  await refused(await reencoded((p) => p.tensors.push({ name: "output_norm.bias", shape: [64], data: new Float32Array(64) })), "GGUF_UNUSED_TENSOR", "output_norm.bias");
  await refused(await reencoded((p) => p.tensors.push({ name: "rope_freqs.weight", shape: [5], data: new Float32Array(5).fill(1) })), "GGUF_BAD_TENSOR", "rope_freqs.weight", "[5]", "[4]");
  // Bytes after the last tensor that no tensor describes.
  await refused(new Uint8Array([...STORIES_BYTES, ...new Uint8Array(64)]), "GGUF_TRAILING_DATA", "belong to no tensor");
});

Deno.test("findings 1-4: the unchanged file and neutral re-encodings load with identical outputs", async () => {
  const ids = [1, 403, 407, 261, 378];
  const { result } = await load(STORIES_BYTES);
  const base = await result;
  const want = await base.logits(ids);
  base.close();
  for (
    const bytes of [
      await reencoded(() => {}),
      await reencoded((p) => p.tensors.reverse()), // any tensor order, offsets in info order
      await reencoded((p) => p.metadata.set("general.comment", { type: GgufType.STRING, value: "not read by the model" })),
      await reencoded((p) => p.metadata.set("llama.block_count", { type: GgufType.INT32, value: 5 })), // another integer type
      await reencoded(() => {}, 64), // general.alignment 64
    ]
  ) {
    const m = await (await load(bytes)).result;
    assert.deepEqual(await m.logits(ids), want);
    m.close();
  }
  await rm(dir, { recursive: true, force: true });
});


