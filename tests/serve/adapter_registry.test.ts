/**
 * AdapterRegistry: adapters load from disk on first use, the LRU keeps resident ones within the
 * byte budget, pinned (in-use) adapters are never evicted or freed, and a delete while in use
 * takes effect when the last lease ends.
 */
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdapterRegistry, checkAdapterId } from "../../src/infer/adapter_registry.ts";
import { loadModel } from "../../src/api/model.ts";
import { STORIES, testGpu } from "../helpers.ts";

Deno.test("adapter registry: load on first use, LRU within a byte budget, pins, deferred delete", async () => {
  const model = await loadModel(STORIES, { gpu: await testGpu() });
  const dir = await mkdtemp(join(tmpdir(), "registry-"));
  const ids = ["a", "b", "c"];
  for (const [i, id] of ids.entries()) {
    model.addAdapter(id, { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"], init_lora_weights: false }, i + 1);
    await model.saveAdapter(id, join(dir, id));
    model.deleteAdapter(id);
  }
  const one = 5 * ((4 * 64 + 64 * 4) + (4 * 64 + 32 * 4)) * 4; // bytes of one adapter
  const reg = new AdapterRegistry(model.peft, { budgetBytes: one * 2 });
  for (const id of ids) reg.register(id, join(dir, id));
  assert.equal(reg.residentCount(), 0, "nothing loaded before first use");
  const expectedA = await (async () => {
    const l = await reg.acquire("a");
    try {
      return await model.complete("Once", { maxTokens: 6, temperature: 0, adapter: "a" });
    } finally {
      l.release();
    }
  })();
  assert.equal(reg.info("a").bytes, one);
  (await reg.acquire("b")).release();
  assert.deepEqual([reg.residentCount(), reg.evictions], [2, 0]);
  (await reg.acquire("c")).release(); // over budget: a (least recently used) goes
  assert.deepEqual([reg.info("a").resident, reg.info("b").resident, reg.info("c").resident], [false, true, true]);
  assert.equal(reg.evictions, 1);
  assert.ok(reg.residentBytes() <= one * 2);
  // a comes back from disk with the same outputs.
  const la = await reg.acquire("a");
  assert.equal(await model.complete("Once", { maxTokens: 6, temperature: 0, adapter: "a" }), expectedA);
  assert.equal(reg.loads, 4);
  // Pinned adapters are never evicted, even over budget.
  const lb = await reg.acquire("b"), lc = await reg.acquire("c");
  assert.equal(reg.residentCount(), 3);
  // Delete while in use: still usable by the holder, freed when released.
  reg.remove("a");
  assert.equal(reg.has("a"), false);
  assert.ok(model.adapters.has("a"));
  la.release();
  assert.ok(!model.adapters.has("a"), "freed after the last lease");
  lb.release();
  lc.release();
  await assert.rejects(reg.acquire("a"), /no adapter named a/);
  assert.throws(() => reg.register("../x", dir), /adapter id/);
  for (const bad of ["..", ".x", "a/b", "", "a".repeat(65), "-a"]) assert.throws(() => checkAdapterId(bad), /adapter id/, bad);
  for (const good of ["a", "A_b-1.2", "0"]) assert.equal(checkAdapterId(good), good);
  model.close();
});
