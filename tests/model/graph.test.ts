/**
 * The autodiff graph the block and every PEFT hook are written in: each op's backward against
 * central finite differences on the CPU backend (awkward shapes), checkpointing against the
 * plain tape, and the GPU backend against the CPU backend on the same graph (values and grads).
 */
import assert from "node:assert/strict";
import type { Tensor } from "../../src/gpu/gpu.ts";
import type { Backend } from "../../src/model/backend.ts";
import { CpuBackend, host, type HostTensor } from "../../src/model/cpu_backend.ts";
import { GpuBackend } from "../../src/model/gpu_backend.ts";
import { Graph, type Param, type V } from "../../src/model/graph.ts";
import { randn, testGpu } from "../helpers.ts";

type Build<T> = (g: Graph<T>, p: V<T>[]) => V<T>;

/** L = Σ y·R for a fixed random R; returns L and (with grad) the gradients of every param. */
function run<T>(be: Backend<T>, params: Param<T>[], build: Build<T>, R: T, grad: boolean, toHost: (t: T) => Float32Array, training = true): number {
  const g = new Graph(be, { grad, training, seed: 9 });
  const vs = params.map((p) => g.param(p));
  const y = build(g, vs);
  const yv = toHost(y.value), r = toHost(R);
  let L = 0;
  for (let i = 0; i < yv.length; i++) L += yv[i] * r[i];
  if (grad) g.backward(y, be.copy(R)).releaseAll();
  else g.free(y);
  g.dispose();
  return L;
}

/** Checks the graph's gradients of L against central differences (f32 storage: loose tolerance). */
function fdCheck(name: string, shapes: number[][], build: Build<HostTensor>, outShape: number[], o: { eps?: number; tol?: number; seed?: number } = {}) {
  const be = new CpuBackend(BASE);
  const seed = o.seed ?? 1;
  const params: Param<HostTensor>[] = shapes.map((s, i) => ({ value: host(s, randn(s.reduce((a, b) => a * b, 1), seed + i, 0.7)), grad: host(s) }));
  const R = host(outShape, randn(outShape.reduce((a, b) => a * b, 1), 99));
  run(be, params, build, R, true, (t) => t.data);
  const eps = o.eps ?? 1e-2, tol = o.tol ?? 2e-2;
  for (const [pi, p] of params.entries()) {
    const n = p.value.data.length;
    for (const i of [0, Math.floor(n / 2), n - 1, Math.floor(n / 3)]) {
      const keep = p.value.data[i];
      p.value.data[i] = keep + eps;
      const up = run(be, params.map((q) => ({ value: q.value })), build, R, false, (t) => t.data);
      p.value.data[i] = keep - eps;
      const down = run(be, params.map((q) => ({ value: q.value })), build, R, false, (t) => t.data);
      p.value.data[i] = keep;
      const fd = (up - down) / (2 * eps), got = p.grad!.data[i];
      assert.ok(Math.abs(fd - got) <= tol * Math.max(1, Math.abs(fd)), `${name}: param ${pi}[${i}] grad ${got} vs finite difference ${fd}`);
    }
  }
}

// A frozen base linear "w" [5, 7] and a norm weight for the ops that read backend weights.
const BASE = new Map<string, HostTensor>([["w", host([5, 7], randn(35, 77, 0.5))], ["n", host([7], randn(7, 78, 0.3).map((v) => 1 + v))]]);

Deno.test("graph: matmul in every layout, matmulAdd, baseLinear(Add) match finite differences", () => {
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      const a = transA ? [7, 3] : [3, 7], b = transB ? [5, 7] : [7, 5];
      fdCheck(`matmul ${transA}/${transB}`, [a, b], (g, [x, y]) => g.matmul(x, y, { transA, transB, alpha: 1.5 }), [3, 5]);
      fdCheck(`matmulAdd ${transA}/${transB}`, [[3, 5], a, b], (g, [c, x, y]) => g.matmulAdd(g.keep(c), x, y, { transA, transB, alpha: -0.5 }), [3, 5]);
    }
  }
  fdCheck("baseLinear", [[3, 7]], (g, [x]) => g.baseLinear(x, "w"), [3, 5]);
  fdCheck("baseLinearAdd", [[3, 5], [3, 7]], (g, [c, x]) => g.baseLinearAdd(g.keep(c), x, "w"), [3, 5]);
});

Deno.test("graph: elementwise and broadcast ops match finite differences", () => {
  fdCheck("add", [[4, 3], [4, 3]], (g, [a, b]) => g.add(a, b), [4, 3]);
  fdCheck("axpy", [[4, 3], [4, 3]], (g, [a, b]) => g.axpy(a, b, -0.7), [4, 3]);
  fdCheck("scale", [[4, 3]], (g, [a]) => g.scale(a, 2.5), [4, 3]);
  fdCheck("mul", [[4, 3], [4, 3]], (g, [a, b]) => g.mul(a, b), [4, 3]);
  fdCheck("mulCols", [[17, 3], [3]], (g, [a, v]) => g.mulCols(a, v), [17, 3]);
  fdCheck("mulCols (1,n) vector", [[2, 5], [1, 5]], (g, [a, v]) => g.mulCols(a, v), [2, 5]);
  fdCheck("addCols", [[17, 3], [3]], (g, [a, v]) => g.addCols(a, v), [17, 3]);
  fdCheck("div by a constant", [[5]], (g, [a]) => g.div(a, g.constant(host([5], Float32Array.from([1.5, -2, 3, 0.5, 4])))), [5]);
  fdCheck("dropout", [[3, 11]], (g, [a]) => g.dropout(a, 0.3, 1234), [3, 11]);
  fdCheck("swiglu", [[3, 5], [3, 5]], (g, [a, b]) => g.swiglu(a, b), [3, 5]);
});

Deno.test("graph: rmsnorm (input and weight), rope and attention match finite differences", () => {
  fdCheck("rmsnorm", [[3, 7], [7]], (g, [x, w]) => g.rmsnorm(x, w, 1e-5), [3, 7], { eps: 3e-3 });
  fdCheck("rmsnorm frozen weight", [[3, 7]], (g, [x]) => g.rmsnorm(x, g.constant(BASE.get("n")!), 1e-5), [3, 7], { eps: 3e-3 });
  // 2 sequences of 3 tokens, 2 heads of 4 dims, rotated by 4 of them.
  const rope = { N: 6, T: 3, pos0: 0, nHeads: 2, headDim: 4, ropeDim: 4, base: 10000 };
  fdCheck("rope", [[6, 8]], (g, [x]) => g.rope(g.keep(x), rope), [6, 8]);
  const att = { B: 2, T: 3, S: 3, kvStride: 3, pos0: 0, nHeads: 2, nKvHeads: 1, headDim: 4 };
  fdCheck("attention (GQA)", [[6, 8], [6, 4], [6, 4]], (g, [q, k, v]) => g.attention(q, k, v, att), [6, 8], { eps: 3e-3 });
  // keys with a 2-row prefix before each sequence (prefix tuning's layout): pos0 = 2, S = 5
  const pre = { B: 1, T: 3, S: 5, kvStride: 5, pos0: 2, nHeads: 2, nKvHeads: 2, headDim: 4 };
  fdCheck("attention with prefix rows", [[3, 8], [5, 8], [5, 8]], (g, [q, k, v]) => g.attention(q, k, v, pre), [3, 8], { eps: 3e-3 });
});

Deno.test("graph: blocks of rows and columns, virtual-token rows and activations match finite differences", () => {
  fdCheck("sliceRows", [[5, 3]], (g, [x]) => g.sliceRows(x, 1, 3), [3, 3]);
  fdCheck("sliceCols", [[4, 7]], (g, [x]) => g.sliceCols(x, 2, 4), [4, 4]);
  fdCheck("concatRows", [[2, 3], [3, 3]], (g, [a, b]) => g.concatRows([a, b, a]), [7, 3]);
  fdCheck("concatCols", [[3, 2], [3, 5]], (g, [a, b]) => g.concatCols([b, a]), [3, 7]);
  // 3 sequences of 2 rows, each after the same 2 prefix rows
  fdCheck("prefixRows", [[2, 4], [6, 4]], (g, [p, x]) => g.prefixRows(p, x, 3), [12, 4]);
  for (const fn of ["relu", "tanh", "sigmoid", "silu", "gelu"] as const) fdCheck(`act ${fn}`, [[3, 5]], (g, [x]) => g.act(x, fn), [3, 5], { eps: 1e-3 });
});

Deno.test("graph: checkpointing gives the plain tape's gradients; values used twice sum their gradients", () => {
  const be = new CpuBackend(BASE);
  const build: Build<HostTensor> = (g, [x, w, v]) => {
    const xx = g.keep(x);
    const y = g.checkpoint(xx, (sg, xi) => {
      const h = sg.rmsnorm(xi, w, 1e-5);
      const out = sg.baseLinearAdd(sg.matmul(h, v, { transB: true }), h, "w"); // h used twice
      sg.free(h);
      sg.free(xi);
      return out;
    });
    return y;
  };
  const plain: Build<HostTensor> = (g, [x, w, v]) => {
    const h = g.rmsnorm(x, w, 1e-5);
    const out = g.baseLinearAdd(g.matmul(h, v, { transB: true }), h, "w");
    g.free(h);
    return out;
  };
  const mk = (): Param<HostTensor>[] => [[4, 7], [7], [5, 7]].map((s, i) => ({ value: host(s, randn(s[0] * (s[1] ?? 1), 30 + i)), grad: host(s) }));
  const R = host([4, 5], randn(20, 7));
  const a = mk(), b = mk();
  const La = run(be, a, build, R, true, (t) => t.data), Lb = run(be, b, plain, R, true, (t) => t.data);
  assert.ok(Math.abs(La - Lb) < 1e-6);
  for (let i = 0; i < a.length; i++) {
    const d = a[i].grad!.data.map((v, j) => Math.abs(v - b[i].grad!.data[j]));
    assert.ok(Math.max(...d) < 1e-6, `param ${i}: checkpointed grads differ by ${Math.max(...d)}`);
  }
  fdCheck("value used twice", [[4, 7], [7], [5, 7]], plain, [4, 5], { eps: 3e-3 });
});

Deno.test("graph: the GPU backend computes the CPU backend's values and gradients", async () => {
  const gpu = await testGpu();
  const w = gpu.upload(BASE.get("w")!.data, [5, 7]);
  const n = gpu.upload(BASE.get("n")!.data, [7]);
  const gbe = new GpuBackend({ gpu, computeDtype: "f32", w: () => n, lw: () => w });
  const cbe = new CpuBackend(BASE);
  // A LoRA-, DoRA- and (IA)³-like composite: norm, base linear, low-rank add, column scaling, bias.
  const build = <T>(g: Graph<T>, [x, A, B, l, b, m]: V<T>[]): V<T> => {
    const h = g.rmsnorm(x, g.constant(g.be.weight("n")), 1e-5);
    const hs = g.mulCols(h, l);
    g.free(h);
    const y = g.baseLinear(hs, "w");
    const ax = g.matmul(g.dropout(hs, 0.2, 5), A, { transB: true });
    const y2 = g.matmulAdd(y, ax, B, { transB: true, alpha: 2 });
    const y3 = g.addCols(g.mulCols(y2, m), b);
    for (const v of [ax, y2, hs]) g.free(v);
    return y3;
  };
  const shapes = [[17, 7], [3, 7], [5, 3], [7], [5], [5]];
  const hostParams = shapes.map((s, i) => host(s, randn(s.reduce((a, b) => a * b, 1), 50 + i, 0.6)));
  const cp: Param<HostTensor>[] = hostParams.map((p) => ({ value: p, grad: host(p.shape) }));
  const gp: Param<Tensor>[] = hostParams.map((p) => ({ value: gpu.upload(p.data, p.shape), grad: gpu.zeros(p.shape) }));
  const R = randn(17 * 5, 3);
  const readAll = async (t: Tensor) => await gpu.readF32(t);
  const Lc = run(cbe, cp, build, host([17, 5], R), true, (t) => t.data);
  // The GPU graph reads values back asynchronously: run it, then read.
  const g = new Graph(gbe, { grad: true, training: true, seed: 9 });
  const y = build(g, gp.map((p) => g.param(p)));
  const yv = await readAll(y.value);
  g.backward(y, gpu.upload(R, [17, 5])).releaseAll();
  g.dispose();
  let Lg = 0;
  for (let i = 0; i < yv.length; i++) Lg += yv[i] * R[i];
  assert.ok(Math.abs(Lg - Lc) <= 1e-4 * Math.max(1, Math.abs(Lc)), `loss ${Lg} vs ${Lc}`);
  for (let i = 0; i < gp.length; i++) {
    const got = await readAll(gp[i].grad!), want = cp[i].grad!.data;
    const d = Math.max(...got.map((v, j) => Math.abs(v - want[j])));
    const scale = Math.max(1e-3, ...want.map(Math.abs));
    assert.ok(d <= 1e-5 * scale + 1e-6, `param ${i}: GPU grad differs from CPU by ${d} (scale ${scale})`);
    gp[i].value.release();
    gp[i].grad!.release();
  }
  w.release();
  n.release();
});
