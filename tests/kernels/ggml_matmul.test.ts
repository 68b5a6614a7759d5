/**
 * GPU matmuls and embedding lookups on ggml block formats vs the CPU dequantizer + f64 matmul,
 * on awkward shapes (M 1, 3, 17, 64; odd N; K = 32·k or 256·k), with the GPU holding exactly
 * the format's bytes.
 */
import assert from "node:assert/strict";
import { dequantizeGgml, GGML, GGML_TYPES } from "../../src/io/ggml_quants.ts";
import { quantizeGgml } from "../../src/io/ggml_quantize.ts";
import {
  ggmlBytes,
  ggmlEmbedding,
  ggmlEmbeddingReference,
  GGML_GPU_TYPES,
  ggmlMatmul,
  ggmlMatmulBackward,
  ggmlMatmulBackwardReference,
  ggmlMatmulReference,
  uploadGgml,
} from "../../src/kernels/ggml_matmul.ts";
import { assertClose, isErr, randn, randomGgmlBytes, testGpu } from "../helpers.ts";

const TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "BF16"] as const;

/** [M, N, K]: gemv (M <= 8) and tiled paths, odd N, several 64-tiles, K of 1..3 blocks per 16-step. */
function shapes(type: string): [number, number, number][] {
  if (type.endsWith("_K")) return [[1, 5, 256], [3, 17, 512], [17, 67, 256], [64, 9, 768]];
  if (type === "BF16") return [[1, 5, 40], [3, 17, 24], [17, 67, 72], [64, 9, 8]]; // K % 16 == 8 too
  return [[1, 5, 96], [3, 17, 32], [17, 67, 160], [64, 9, 224]];
}

/** ggml bytes of a weight [N, K]: our quantizer on N(0, 0.1) values. */
function weightBytes(type: number, N: number, K: number, seed: number): Uint8Array {
  return quantizeGgml(type, randn(N * K, seed, 0.1), K);
}

for (const name of TYPES) {
  const type = GGML[name];
  for (const [M, N, K] of shapes(name)) {
    const label = `${name} M${M} N${N} K${K}`;
    Deno.test(`ggmlMatmul / ggmlMatmulBackward vs CPU dequant-matmul: ${label}`, async () => {
      const gpu = await testGpu();
      const bytes = weightBytes(type, N, K, M + N + K);
      const w = uploadGgml(gpu, type, bytes, [N, K], `blk.0.${name}`);
      const xh = randn(M * K, 7 + M), dyh = randn(M * N, 11 + M);
      const x = gpu.upload(xh, [M, K], "f32", "activations");
      const dy = gpu.upload(dyh, [M, N], "f32", "activations");

      const y = ggmlMatmul(gpu, x, w, { M });
      assertClose(await gpu.readF32(y), ggmlMatmulReference(xh, type, bytes, [N, K], M), 1e-5, 1e-5, `${label} forward`);
      // alpha and accumulate: y = 0.5 * x·Wᵀ + y
      ggmlMatmul(gpu, x, w, { M, alpha: 0.5, accumulate: true, out: y });
      assertClose(await gpu.readF32(y), ggmlMatmulReference(xh, type, bytes, [N, K], M, 1.5), 1e-5, 1e-5, `${label} forward accumulate`);

      const dx = ggmlMatmulBackward(gpu, dy, w, { M, alpha: 2 });
      assertClose(await gpu.readF32(dx), ggmlMatmulBackwardReference(dyh, type, bytes, [N, K], M, 2), 1e-5, 1e-5, `${label} backward`);
      ggmlMatmulBackward(gpu, dy, w, { M, alpha: -1, accumulate: true, out: dx });
      assertClose(await gpu.readF32(dx), ggmlMatmulBackwardReference(dyh, type, bytes, [N, K], M, 1), 1e-5, 1e-5, `${label} backward accumulate`);

      // the GPU holds the format's bytes and nothing more (padded to a u32 word)
      const t = GGML_TYPES.get(type)!;
      assert.equal(ggmlBytes(w), Math.ceil(((N * K) / t.blockSize) * t.typeSize / 4) * 4, `${label} GPU bytes`);
      for (const tensor of [x, dy, y, dx]) tensor.release();
      w.release();
    });
  }
}

Deno.test("ggml kernels: GPU bytes per parameter are the formats' (Q4_K 4.5 bits, Q8_0 8.5, Q6_K 6.5625)", async () => {
  const gpu = await testGpu();
  const [N, K] = [64, 1024];
  const bits: Record<string, number> = { Q8_0: 8.5, Q4_0: 4.5, Q4_1: 5, Q5_0: 5.5, Q5_1: 6, Q4_K: 4.5, Q5_K: 5.5, Q6_K: 6.5625, BF16: 16 };
  for (const name of TYPES) {
    const w = uploadGgml(gpu, GGML[name], weightBytes(GGML[name], N, K, 1), [N, K], name);
    assert.equal((8 * ggmlBytes(w)) / (N * K), bits[name], name);
    w.release();
  }
});

Deno.test("ggmlMatmulBackward is the adjoint of ggmlMatmul: <x·Wᵀ, dy> = <x, dy·W> (tiled and gemv paths)", async () => {
  // For a linear map the backward is exact to check this way (finite differences of a linear
  // function are exact too, only with more rounding).
  const gpu = await testGpu();
  for (const [name, M, N, K] of [["Q4_K", 19, 37, 512], ["Q5_0", 3, 29, 96], ["Q6_K", 1, 3, 256]] as const) {
    const type = GGML[name];
    const w = uploadGgml(gpu, type, weightBytes(type, N, K, M), [N, K], name);
    const xh = randn(M * K, 2), dyh = randn(M * N, 3);
    const x = gpu.upload(xh, [M, K], "f32", "activations"), dy = gpu.upload(dyh, [M, N], "f32", "activations");
    const yt = ggmlMatmul(gpu, x, w, { M }), dxt = ggmlMatmulBackward(gpu, dy, w, { M });
    const y = await gpu.readF32(yt), dx = await gpu.readF32(dxt);
    let a = 0, b = 0, scale = 0;
    for (let i = 0; i < y.length; i++) (a += y[i] * dyh[i]), (scale += Math.abs(y[i] * dyh[i]));
    for (let i = 0; i < dx.length; i++) b += xh[i] * dx[i];
    assert.ok(Math.abs(a - b) <= 1e-5 * scale, `${name} M${M}: <y,dy> ${a} vs <x,dx> ${b}`);
    for (const t of [x, dy, yt, dxt]) t.release();
    w.release();
  }
});

for (const name of TYPES) {
  Deno.test(`ggmlEmbedding ${name}: rows of random blocks (every quant bit pattern, subnormal scales) equal the CPU dequantizer bit for bit`, async () => {
    const gpu = await testGpu();
    const type = GGML[name], t = GGML_TYPES.get(type)!;
    const C = name === "BF16" ? 24 : t.blockSize * 3, V = 11;
    const bytes = randomGgmlBytes(type, (V * C) / t.blockSize, type);
    const w = uploadGgml(gpu, type, bytes, [V, C], `token_embd.${name}`);
    const idsh = new Uint32Array([3, 0, 10, 3, 11, 7, 0xffffffff, 1]); // repeats, and ids past the table give zeros
    const ids = gpu.upload(idsh, [idsh.length], "u32", "activations");
    const out = await gpu.readF32(ggmlEmbedding(gpu, w, ids));
    assert.deepEqual(out, ggmlEmbeddingReference(type, bytes, [V, C], idsh), name);
    // rows are the dequantized rows themselves
    const table = dequantizeGgml(type, bytes, V * C);
    assert.deepEqual(out.subarray(2 * C, 3 * C), table.subarray(10 * C, 11 * C));
    // alpha and accumulate (an embedding scaled and added, e.g. Gemma's sqrt(dim) scaling)
    const o2 = gpu.upload(new Float32Array(idsh.length * C).fill(1), [idsh.length, C], "f32", "activations");
    ggmlEmbedding(gpu, w, ids, { alpha: 0.5, accumulate: true, out: o2 });
    assertClose(await gpu.readF32(o2), ggmlEmbeddingReference(type, bytes, [V, C], idsh, 0.5).map((v) => v + 1), 0, 1e-6, `${name} accumulate`);
    ids.release(), o2.release(), w.release();
  });
}

Deno.test("ggml kernels: a type without a kernel, a wrong byte count, a bad shape or wrong inputs are refused by name", async () => {
  const gpu = await testGpu();
  assert.throws(() => uploadGgml(gpu, GGML.Q8_1, new Uint8Array(36), [1, 32], "blk.3.attn_k.weight"), isErr("UNSUPPORTED", "blk.3.attn_k.weight", "Q8_1", "Q4_K"));
  assert.throws(() => uploadGgml(gpu, GGML.Q2_K, new Uint8Array(84), [1, 256], "w"), isErr("UNSUPPORTED", "Q2_K"));
  assert.throws(() => uploadGgml(gpu, GGML.Q8_0, new Uint8Array(33), [1, 32], "w"), isErr("GGML_BAD_SHAPE", "w", "34 bytes", "33"));
  assert.throws(() => uploadGgml(gpu, GGML.Q4_K, new Uint8Array(144), [2, 128], "w"), isErr("GGUF_BAD_TENSOR", "w", "128", "Q4_K's block of 256"));
  assert.throws(() => uploadGgml(gpu, GGML.BF16, new Uint8Array(12), [1, 6], "w"), isErr("GGML_BAD_SHAPE", "BF16", "multiple of 8"));
  assert.throws(() => uploadGgml(gpu, GGML.Q8_0, new Uint8Array(34), [32], "w"), isErr("GGML_BAD_SHAPE", "matrix"));
  const w = uploadGgml(gpu, GGML.Q8_0, new Uint8Array(2 * 34), [2, 32], "blk.0.ffn_up.weight");
  const x = gpu.upload(new Float32Array(3 * 32), [3, 32], "f32", "activations");
  assert.throws(() => ggmlMatmul(gpu, x, w, { M: 4 }), isErr("KERNEL_ARGS", "blk.0.ffn_up.weight", "[4, 32]"));
  assert.throws(() => ggmlMatmul(gpu, x, w, { M: 3, accumulate: true }), isErr("KERNEL_ARGS", "accumulate needs out"));
  assert.throws(() => ggmlMatmulBackward(gpu, x, w, { M: 3, out: x }), isErr("KERNEL_ARGS", "alias"));
  const f16 = gpu.tensor([3, 32], "f16");
  assert.throws(() => ggmlMatmul(gpu, f16, w, { M: 3 }), isErr("KERNEL_ARGS", "f32"));
  const ids = gpu.upload(new Int32Array([1]), [1], "i32", "activations");
  assert.throws(() => ggmlEmbedding(gpu, w, ids), isErr("EMBEDDING_ARGS", "u32"));
  for (const t of [x, f16, ids]) t.release();
  w.release();
  assert.deepEqual([...GGML_GPU_TYPES].sort((a, b) => a - b), TYPES.map((n) => GGML[n]).sort((a, b) => a - b));
});
