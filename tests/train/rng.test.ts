import assert from "node:assert/strict";
import { deriveSeed, Rng } from "../../src/util/rng.ts";

Deno.test("Rng: same seed same stream, different seeds differ", () => {
  const a = new Rng(1), b = new Rng(1), c = new Rng(2);
  const xs = Array.from({ length: 100 }, () => a.nextU32());
  assert.deepEqual(Array.from({ length: 100 }, () => b.nextU32()), xs);
  const ys = Array.from({ length: 100 }, () => c.nextU32());
  assert.ok(xs.filter((x, i) => x === ys[i]).length < 3);
});

Deno.test("Rng: state round-trips through JSON and continues the stream", () => {
  const a = new Rng(42);
  for (let i = 0; i < 17; i++) a.normal();
  const saved = JSON.parse(JSON.stringify(a.state()));
  const next = Array.from({ length: 50 }, () => a.uniform());
  const b = Rng.fromState(saved);
  assert.deepEqual(Array.from({ length: 50 }, () => b.uniform()), next);
  assert.throws(() => Rng.fromState([1, 2, 3]), /four u32 words/);
  assert.throws(() => Rng.fromState([0, 0, 0, 0]), /all zeros/);
});

Deno.test("Rng: uniform and normal have the right moments", () => {
  const r = new Rng(7);
  const n = 200_000;
  let s = 0, s2 = 0, min = 1, max = 0;
  for (let i = 0; i < n; i++) {
    const u = r.uniform();
    s += u; s2 += u * u; min = Math.min(min, u); max = Math.max(max, u);
  }
  assert.ok(min >= 0 && max < 1);
  assert.ok(Math.abs(s / n - 0.5) < 0.005, `uniform mean ${s / n}`);
  assert.ok(Math.abs(s2 / n - s * s / n / n - 1 / 12) < 0.002, "uniform variance");
  let m = 0, v = 0;
  for (let i = 0; i < n; i++) {
    const z = r.normal(1, 2);
    m += z; v += (z - 1) ** 2;
  }
  assert.ok(Math.abs(m / n - 1) < 0.02, `normal mean ${m / n}`);
  assert.ok(Math.abs(Math.sqrt(v / n) - 2) < 0.02, `normal std ${Math.sqrt(v / n)}`);
});

Deno.test("Rng: shuffle is a permutation and int is in range and roughly uniform", () => {
  const r = new Rng(3);
  const p = r.permutation(1000);
  assert.deepEqual([...p].sort((x, y) => x - y), Array.from({ length: 1000 }, (_, i) => i));
  assert.notDeepEqual(p, Array.from({ length: 1000 }, (_, i) => i));
  const counts = new Array(6).fill(0);
  for (let i = 0; i < 60_000; i++) counts[r.int(6)]++;
  for (const c of counts) assert.ok(Math.abs(c - 10_000) < 500, `int(6) counts ${counts}`);
  assert.throws(() => r.int(0), /rng.int/);
});

Deno.test("deriveSeed: deterministic, order-sensitive, spreads nearby inputs", () => {
  assert.equal(deriveSeed(1, 2, 3), deriveSeed(1, 2, 3));
  assert.notEqual(deriveSeed(1, 2, 3), deriveSeed(1, 3, 2));
  assert.notEqual(deriveSeed(1, 2), deriveSeed(2, 2));
  assert.notEqual(deriveSeed(1), deriveSeed(1, 0));
  const seen = new Set<number>();
  for (let step = 0; step < 1000; step++) for (let layer = 0; layer < 8; layer++) seen.add(deriveSeed(1, step, layer));
  assert.equal(seen.size, 8000);
  assert.notEqual(deriveSeed(2 ** 40), deriveSeed(0)); // high bits count
  assert.throws(() => deriveSeed(1.5), /seed must be an integer/);
});

Deno.test("Rng: xoshiro128** reference vector from state [1, 2, 3, 4]", () => {
  // Values of the reference C implementation (xoshiro128starstar.c) from that state.
  const r = Rng.fromState([1, 2, 3, 4]);
  assert.deepEqual(Array.from({ length: 6 }, () => r.nextU32()), [11520, 0, 5927040, 70819200, 2031721883, 1637235492]);
});
