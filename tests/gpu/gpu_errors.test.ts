/**
 * No GPU error passes silently: a kernel WebGPU rejects, or one that needs more than the device's
 * limits, ends in a PeftError naming it, and the Gpu refuses further work (results after an
 * error would be garbage: a rejected pipeline computes nothing and reads back zeros).
 */
import assert from "node:assert/strict";
import { f32, Gpu } from "../../src/gpu/gpu.ts";
import { PeftError } from "../../src/errors.ts";
import { attentionBackward } from "../../src/kernels/attention.ts";

Deno.test("gpu errors: a pipeline WebGPU rejects throws a PeftError naming the kernel, and later work refuses", async () => {
  const gpu = await Gpu.create();
  try {
    const t = gpu.tensor([4]);
    gpu.dispatch("fill", "no_such_entry_point", { bindings: { y: t }, params: [4, f32(1)], workgroups: [1] });
    await assert.rejects(() => gpu.readF32(t), (e: unknown) => {
      assert.ok(e instanceof PeftError, String(e));
      assert.equal(e.code, "GPU_VALIDATION");
      assert.match(e.message, /fill\.no_such_entry_point/);
      return true;
    });
    // The device is poisoned: no later dispatch or readback may pass as if nothing happened.
    assert.throws(() => gpu.dispatch("fill", "main", { bindings: { y: t }, params: [4, f32(2)], workgroups: [1] }), /fill\.no_such_entry_point/);
    await assert.rejects(() => gpu.readF32(t), /fill\.no_such_entry_point/);
  } finally {
    gpu.destroy();
  }
});

Deno.test("gpu errors: a kernel over the device's storage-buffer limit is refused before it runs", async () => {
  // WebGPU's default limits allow 8 storage buffers per stage; attention's backward binds 10
  // (Bun's device got the defaults before its limits request was fixed, and trained to zeros).
  const gpu = await Gpu.create({ limits: "default" });
  try {
    assert.equal(gpu.device.limits.maxStorageBuffersPerShaderStage, 8);
    const B = 1, T = 3, H = 2, D = 4;
    const mk = (n: number) => gpu.upload(new Float32Array(n).fill(0.1), [n]);
    const q = mk(T * H * D), k = mk(T * H * D), v = mk(T * H * D), out = mk(T * H * D), dout = mk(T * H * D), lse = mk(T * H);
    assert.throws(
      () => attentionBackward(gpu, dout, q, k, v, out, lse, { B, T, S: T, kvStride: T, pos0: 0, nHeads: H, nKvHeads: H, headDim: D, saveLse: true }),
      (e: unknown) => {
        assert.ok(e instanceof PeftError, String(e));
        assert.equal(e.code, "GPU_LIMIT");
        assert.match(e.message, /attention_backward\.\w+ binds 10 storage buffers, over this device's maxStorageBuffersPerShaderStage of 8/);
        return true;
      },
    );
  } finally {
    gpu.destroy();
  }
});

Deno.test("gpu errors: the default device gets the adapter's storage-buffer limit", async () => {
  const gpu = await Gpu.create();
  try {
    assert.equal(gpu.device.limits.maxStorageBuffersPerShaderStage, gpu.info.adapterLimits.maxStorageBuffersPerShaderStage);
  } finally {
    gpu.destroy();
  }
});
