import assert from "node:assert/strict";
import { embedding, embeddingBackward, embeddingBackwardReference, embeddingReference } from "../../src/kernels/embedding.ts";
import { assertClose, randn, rng, testGpu } from "../helpers.ts";

/** Ids with many repeats (small range), plus one out-of-vocabulary id when asked. */
function idsFor(N: number, V: number, seed: number, oov = false): Uint32Array {
  const r = rng(seed);
  const ids = Uint32Array.from({ length: N }, () => Math.floor(r() * Math.min(V, 1 + N / 3)));
  if (oov && N > 2) ids[N - 2] = V + 5;
  return ids;
}

Deno.test("embedding forward matches the reference (repeats, out-of-vocab id gives zeros)", async () => {
  const gpu = await testGpu();
  for (const [N, V, C] of [[1, 1, 1], [3, 5, 17], [17, 33, 8], [130, 512, 64], [1100, 7, 61]]) {
    const th = randn(V * C, V + C), ih = idsFor(N, V, N, true);
    const table = gpu.upload(th, [V, C]), ids = gpu.upload(ih, [N]);
    const out = embedding(gpu, table, ids);
    assert.deepEqual(out.shape, [N, C]);
    assertClose(await gpu.readF32(out), embeddingReference(th, ih, V, C), 0, 0, `embedding N=${N} V=${V} C=${C}`);
    for (const t of [table, ids, out]) t.release();
  }
});

Deno.test("embeddingBackward matches the f64 reference, accumulates into dTable, and is bitwise deterministic", async () => {
  const gpu = await testGpu();
  for (const [N, V, C] of [[1, 1, 1], [3, 5, 17], [17, 33, 8], [130, 512, 64], [1100, 7, 61]]) {
    const dh = randn(N * C, N * C), ih = idsFor(N, V, N + 1, true), prior = randn(V * C, 3);
    const dy = gpu.upload(dh, [N, C]), ids = gpu.upload(ih, [N]);
    // a token repeated ~160 times sums 160 f32 terms: ~1e-5 relative
    const fresh = embeddingBackward(gpu, dy, ids, V);
    const got = await gpu.readF32(fresh);
    assertClose(got, embeddingBackwardReference(dh, ih, V, C), 1e-5, 1e-5, `dTable N=${N} V=${V} C=${C}`);
    const again = await gpu.readF32(embeddingBackward(gpu, dy, ids, V));
    assert.ok(got.every((v, i) => Object.is(v, again[i])), "same inputs, same bits");
    const acc = gpu.upload(prior, [V, C]);
    assert.equal(embeddingBackward(gpu, dy, ids, V, acc), acc);
    assertClose(await gpu.readF32(acc), embeddingBackwardReference(dh, ih, V, C, prior), 1e-5, 1e-5, `accumulated N=${N}`);
    for (const t of [dy, ids, fresh, acc]) t.release();
  }
});

Deno.test("embedding: bad arguments raise PeftError", async () => {
  const gpu = await testGpu();
  const table = gpu.tensor([4, 3]), idsF = gpu.tensor([2]), ids = gpu.tensor([2], "u32"), dy = gpu.tensor([2, 3]);
  assert.throws(() => embedding(gpu, table, idsF), /ids \[2\] must be u32/);
  assert.throws(() => embedding(gpu, table, ids, gpu.tensor([2, 4])), /out \[2,4\] must be f32 \[2,3\]/);
  assert.throws(() => embeddingBackward(gpu, dy, ids, 4, gpu.tensor([5, 3])), /dTable \[5,3\] must be f32 \[4,3\]/);
  for (const t of [table, idsF, ids, dy]) t.release();
});
