import assert from "node:assert/strict";
import { initLoraAdapter, initLoraWeights, kaimingUniformBound } from "../../src/peft/lora/init.ts";
import type { LoraTarget } from "../../src/peft/targets.ts";

const q: LoraTarget = { layer: 0, module: "q_proj", inFeatures: 64, outFeatures: 64 };
const down: LoraTarget = { layer: 2, module: "down_proj", inFeatures: 172, outFeatures: 64 };

function stats(a: Float32Array) {
  let m = 0, s2 = 0, max = 0;
  for (const v of a) { m += v; s2 += v * v; max = Math.max(max, Math.abs(v)); }
  return { mean: m / a.length, std: Math.sqrt(s2 / a.length - (m / a.length) ** 2), max };
}

Deno.test("kaiming_uniform(a=√5) bound is 1/√fan_in, as PyTorch computes it", () => {
  for (const fanIn of [1, 64, 172, 4096]) assert.ok(Math.abs(kaimingUniformBound(fanIn) - 1 / Math.sqrt(fanIn)) < 1e-15);
  assert.ok(Math.abs(kaimingUniformBound(64, 0) - Math.sqrt(6 / 64)) < 1e-15); // a=0: He uniform
});

Deno.test("default init: A uniform within ±1/√in with the right spread, B exactly zero", () => {
  const w = initLoraWeights(down, 16, true, 1);
  assert.equal(w.A.length, 16 * 172);
  assert.equal(w.B.length, 64 * 16);
  assert.ok(w.B.every((v) => v === 0));
  const s = stats(w.A);
  const bound = 1 / Math.sqrt(172);
  assert.ok(s.max <= bound && s.max > 0.95 * bound, `max ${s.max} vs bound ${bound}`);
  assert.ok(Math.abs(s.std - bound / Math.sqrt(3)) < 0.05 * bound, `std ${s.std}`);
  assert.ok(Math.abs(s.mean) < 0.05 * bound);
});

Deno.test("gaussian init: A ~ N(0, 1/r), B zero", () => {
  const r = 4;
  const w = initLoraWeights({ ...q, inFeatures: 4096 }, r, "gaussian", 3);
  const s = stats(w.A);
  assert.ok(Math.abs(s.std - 1 / r) < 0.01, `std ${s.std}`);
  assert.ok(Math.abs(s.mean) < 0.01);
  assert.ok(w.B.every((v) => v === 0));
});

Deno.test("init_lora_weights false: B random within ±1/√r (nn.Linear default)", () => {
  const w = initLoraWeights(q, 8, false, 5);
  const s = stats(w.B);
  assert.ok(s.max > 0 && s.max <= 1 / Math.sqrt(8));
  assert.ok(s.std > 0.15);
});

Deno.test("init is deterministic per seed and independent per module", () => {
  const a = initLoraAdapter([q, down], 8, true, 7);
  const b = initLoraAdapter([down], 8, true, 7);
  assert.deepEqual(a[1].A, b[0].A); // dropping q_proj leaves down_proj's init unchanged
  assert.deepEqual(initLoraWeights(q, 8, true, 7).A, a[0].A);
  assert.notDeepEqual(initLoraWeights(q, 8, true, 8).A, a[0].A);
  assert.notDeepEqual(initLoraWeights({ ...q, layer: 1 }, 8, true, 7).A, a[0].A);
});
