import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LossPoint, lossCurveSvg, niceTicks, pointsFromMetrics, writeLossCurve } from "../../src/train/loss_svg.ts";
import { parseMetrics } from "../../src/train/progress.ts";

/** Checks tags balance (a small well-formedness check: no DOMParser in Deno). */
function assertWellFormed(svg: string) {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    const [, close, name, self] = m;
    if (self) continue;
    if (close) assert.equal(stack.pop(), name, `closing </${name}>`);
    else stack.push(name);
  }
  assert.deepEqual(stack, []);
  assert.ok(!/<script|href=/.test(svg), "self-contained");
}

/** All coordinates of a path "M x,y L x,y ...". */
function pathPoints(d: string): [number, number][] {
  return [...d.matchAll(/[ML](-?[\d.]+),(-?[\d.]+)/g)].map((m) => [+m[1], +m[2]]);
}

const curve: LossPoint[] = [];
for (let s = 1; s <= 40; s++) {
  curve.push({ step: s, loss: 2 + 3 * Math.exp(-s / 10) + 0.05 * Math.sin(s) });
  if (s % 10 === 0) curve.push({ step: s, evalLoss: 2.2 + 3 * Math.exp(-s / 10) });
}

Deno.test("niceTicks: round values covering the range", () => {
  assert.deepEqual(niceTicks(0, 150, 6), [0, 25, 50, 75, 100, 125, 150]);
  assert.deepEqual(niceTicks(1.63, 6.42, 5), [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(niceTicks(0.0151, 0.0342, 5), [0.015, 0.02, 0.025, 0.03, 0.035]);
  assert.deepEqual(niceTicks(1, 3, 6, 1), [1, 2, 3]);
  // an integer axis never steps by 2.5 (ticks at 2.5, 7.5 steps); a real-valued one may
  assert.deepEqual(niceTicks(0, 14, 6), [0, 2.5, 5, 7.5, 10, 12.5, 15]);
  assert.deepEqual(niceTicks(0, 14, 6, 1), [0, 5, 10, 15]);
  assert.deepEqual(niceTicks(0, 140, 6, 1), [0, 25, 50, 75, 100, 125, 150]);
});

Deno.test("lossCurveSvg: step ticks are whole numbers on short runs", () => {
  for (const last of [3, 7, 10, 14, 23]) {
    const svg = lossCurveSvg(Array.from({ length: last }, (_, i) => ({ step: i + 1, loss: 3 - i * 0.01 })));
    const xLabels = [...svg.matchAll(/<text x="[\d.]+" y="414" text-anchor="middle">([^<]+)<\/text>/g)].map((m) => m[1]);
    assert.ok(xLabels.length >= 2, `run of ${last}: ${xLabels}`);
    for (const l of xLabels) assert.match(l, /^\d+$/, `run of ${last}: tick ${l}`);
  }
});

Deno.test("lossCurveSvg: axes, legend, smoothed train line and eval markers inside the plot", () => {
  const svg = lossCurveSvg(curve, { title: "LoRA <r=8> & friends" });
  assertWellFormed(svg);
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="800" height="450"/);
  assert.ok(svg.includes("LoRA &lt;r=8&gt; &amp; friends"));
  for (const label of [">step<", ">loss<", ">train loss<", ">train loss (smoothed)<", ">eval loss<"]) assert.ok(svg.includes(label), label);
  const circles = [...svg.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)" r="4"/g)];
  assert.equal(circles.length, 4 + 1); // four eval points + the legend swatch
  const paths = [...svg.matchAll(/<path d="(M[^"]+)" stroke="#2563eb"/g)].map((m) => pathPoints(m[1]));
  assert.equal(paths.length, 2); // raw and smoothed
  const [raw] = paths;
  assert.equal(raw.length, 40);
  for (const [x, y] of raw) assert.ok(x >= 68 && x <= 772 && y >= 56 && y <= 396, `${x},${y} inside the plot`);
  assert.ok(raw[0][1] < raw[39][1], "higher loss is drawn higher");
  assert.ok(Math.abs(raw[0][0] - 68) < 0.1 && Math.abs(raw[39][0] - 772) < 0.1, "x spans the plot");
  assert.match(svg, /train 2\.\d{4} {2}· {2}eval 2\.\d{4} {2}· {2}step 40/);
});

Deno.test("lossCurveSvg: short runs, non-finite losses and no data", () => {
  const short = lossCurveSvg([{ step: 1, loss: 5 }, { step: 2, loss: NaN }, { step: 3, loss: 4 }]);
  assertWellFormed(short);
  assert.ok(!short.includes("smoothed"));
  assert.equal([...short.matchAll(/<path d="(M[^"]+)" stroke="#2563eb"/g)].map((m) => pathPoints(m[1]).length)[0], 2);
  assert.ok(!short.includes("NaN"));
  const one = lossCurveSvg([{ step: 7, loss: 3 }]);
  assertWellFormed(one);
  assert.ok(!one.includes("NaN") && !one.includes("Infinity"));
  const empty = lossCurveSvg([], { title: "run" });
  assertWellFormed(empty);
  assert.ok(empty.includes("no data yet"));
});

Deno.test("writeLossCurve: from metrics.jsonl records to <outputDir>/loss.svg", async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-svg-"));
  try {
    const jsonl = [
      { step: 1, loss: 4, lr: 0, tokens_per_s: 10, time: 0.1 },
      { step: 2, loss: 3.5, lr: 1e-4, tokens_per_s: 10, time: 0.2 },
      { step: 2, eval_loss: 3.6, eval_ppl: Math.exp(3.6), time: 0.3 },
    ].map((r) => JSON.stringify(r)).join("\n");
    const points = pointsFromMetrics(parseMetrics(jsonl));
    assert.deepEqual(points.map((p) => [p.step, p.loss, p.evalLoss]), [[1, 4, undefined], [2, 3.5, undefined], [2, undefined, 3.6]]);
    const path = await writeLossCurve(dir, points, { title: "t" });
    assert.equal(path, join(dir, "loss.svg"));
    const svg = await readFile(path, "utf8");
    assertWellFormed(svg);
    assert.match(svg, /eval 3\.6000/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
