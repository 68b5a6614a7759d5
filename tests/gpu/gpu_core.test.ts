import assert from "node:assert/strict";
import { f32, Gpu, grid1d } from "../../src/gpu/gpu.ts";
import { testGpu } from "../helpers.ts";

Deno.test("gpu core: dispatch by binding name, batching, readback, pool", async () => {
  const gpu: Gpu = await testGpu();
  for (const n of [1, 3, 17, 4097]) {
    const t = gpu.tensor([n]);
    gpu.dispatch("fill", "main", { bindings: { y: t }, params: [n, f32(n + 0.5)], workgroups: grid1d(n, 64) });
    const out = await gpu.readF32(t);
    assert.equal(out.length, n);
    assert.ok(out.every((v) => v === n + 0.5));
    t.release();
  }
  const held = gpu.bytesHeld();
  const again = gpu.tensor([4097]);
  assert.equal(gpu.bytesHeld(), held, "a released buffer of the same size class is reused");
  again.release();
});

Deno.test("gpu core: bad binding names are reported", async () => {
  const gpu = await testGpu();
  const t = gpu.tensor([4]);
  assert.throws(() => gpu.dispatch("fill", "main", { bindings: { nope: t }, params: [4, f32(1)], workgroups: [1] }), /no buffer given for binding y/);
  assert.throws(() => gpu.dispatch("fill", "main", { bindings: { y: t, extra: t }, params: [4, f32(1)], workgroups: [1] }), /no binding named extra/);
  t.release();
});
