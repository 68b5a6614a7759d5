import assert from "node:assert/strict";
import type { AdamwOptions } from "../../src/kernels/adamw.ts";
import {
  ADAMW8BIT_BLOCK,
  adamw8bitReference,
  adamw8bitStep,
  adamw8bitTables,
  dequantize8,
  M_MAP,
  quantize8,
  V_MAP,
  zeroCode,
} from "../../src/kernels/adamw8bit.ts";
import { createDynamicMap, DYNAMIC_MAP, UNSIGNED_DYNAMIC_MAP } from "../../src/quant/tables.ts";
import { AdamW8bit } from "../../src/train/adamw8bit.ts";
import { createOptimizer } from "../../src/train/paged_adamw.ts";
import { randn, testGpu } from "../helpers.ts";

Deno.test("adamw_8bit maps: the unsigned dynamic map has 256 sorted entries in [0, 1] with 0 and 1", () => {
  const u = UNSIGNED_DYNAMIC_MAP;
  assert.equal(u.length, 256);
  for (let i = 1; i < 256; i++) assert.ok(u[i] > u[i - 1], `entry ${i}: ${u[i]} after ${u[i - 1]}`);
  assert.ok(u.every((x) => x >= 0 && x <= 1));
  assert.equal(u[0], 0);
  assert.equal(u[255], 1);
  // bnb create_dynamic_map(signed=False): 2^(i+1) means per decade 1e-6..1 (smallest 0.325e-6)
  assert.ok(Math.abs(u[1] / 3.25e-7 - 1) < 1e-6 && Math.abs(u[254] / 0.996484375 - 1) < 1e-6, `${u[1]}, ${u[254]}`);
  assert.deepEqual(createDynamicMap(false), u);
  assert.equal(createDynamicMap(true).length, 256);
  assert.deepEqual(createDynamicMap(), createDynamicMap(true));
  assert.equal(zeroCode(M_MAP), 127);
  assert.equal(DYNAMIC_MAP[127], 0);
  assert.equal(zeroCode(V_MAP), 0);
});

/** The GPU state of one tensor: [pad blocks | its blocks | pad blocks] in an arena (m codes, then v). */
function arena(n: number, pad: number) {
  const blocks = Math.ceil(n / ADAMW8BIT_BLOCK), total = blocks + 2 * pad;
  const codes = new Uint8Array(2 * total * ADAMW8BIT_BLOCK);
  // the padding blocks hold arbitrary state the kernel must not touch
  for (let i = 0; i < codes.length; i++) codes[i] = (i * 37) & 255;
  codes.fill(zeroCode(M_MAP), pad * ADAMW8BIT_BLOCK, (pad + blocks) * ADAMW8BIT_BLOCK);
  codes.fill(zeroCode(V_MAP), (total + pad) * ADAMW8BIT_BLOCK, (total + pad + blocks) * ADAMW8BIT_BLOCK);
  const absmax = Float32Array.from({ length: 2 * total }, (_, i) => i + 0.5);
  absmax.fill(0, pad, pad + blocks).fill(0, total + pad, total + pad + blocks);
  return { blocks, total, codes, absmax };
}

Deno.test("adamw_8bit kernel: consecutive steps match the f32 reference on awkward sizes (weight decay, gradScale, a zero-gradient block)", async () => {
  const gpu = await testGpu();
  const tables = adamw8bitTables(gpu);
  let codesCompared = 0, codesDiffer = 0;
  for (const [k, n] of [1, 255, 256, 1000, 256 * 5 + 3].entries()) {
    const pad = k % 2; // some tensors start at block 1 of their arena
    const a = arena(n, pad);
    const param = gpu.upload(randn(n, 10 + n), [n], "f32", "lora");
    const codes = gpu.upload(new Uint32Array(a.codes.buffer), [a.codes.length / 4], "u32", "optimizer");
    const absmax = gpu.upload(a.absmax, [a.absmax.length], "f32", "optimizer");
    const at = (b: number) => b * ADAMW8BIT_BLOCK;
    for (let step = 1; step <= 4; step++) {
      const gh = randn(n, 1000 * step + n, 0.5 / step);
      if (n >= 512) gh.fill(0, 256, 512); // block 1 sees only zero gradients
      const grad = gpu.upload(gh, [n], "f32", "gradients");
      const o: AdamwOptions = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: step % 2 ? 0.1 : 0, step, gradScale: step === 3 ? 1 : 0.25 };
      // the reference starts from the GPU's state of the step before (so one-code flips do not compound)
      const [ph, ch, ah] = [await gpu.readF32(param), new Uint8Array((await gpu.read(codes)).buffer), await gpu.readF32(absmax)];
      const want = adamw8bitReference({
        param: ph, grad: gh,
        qm: ch.slice(at(pad), at(pad) + n), absm: ah.slice(pad, pad + a.blocks),
        qv: ch.slice(at(a.total + pad), at(a.total + pad) + n), absv: ah.slice(a.total + pad, a.total + pad + a.blocks),
      }, o);
      // the codes stand for the f32 moments within a step of the maps near ±1 (0.7% of absmax: -1 has no code)
      for (const [q, am, m, t] of [[want.qm, want.absm, want.m, M_MAP], [want.qv, want.absv, want.v, V_MAP]] as const) {
        const d = dequantize8(q, am, t);
        for (let i = 0; i < n; i++) assert.ok(Math.abs(d[i] - m[i]) <= 0.0071 * am[i >> 8], `n=${n}: ${d[i]} stands for ${m[i]}`);
      }
      adamw8bitStep(gpu, { param, grad, codes, absmax, tables, blockOffset: pad }, o);
      const what = `n=${n} step ${step}`;
      const p = await gpu.readF32(param);
      for (let i = 0; i < n; i++) {
        assert.ok(Math.abs(p[i] - want.param[i]) <= 1e-6 * Math.abs(want.param[i]) + 1e-12, `${what}: param[${i}] ${p[i]} vs ${want.param[i]}`);
      }
      const c = new Uint8Array((await gpu.read(codes)).buffer), am = await gpu.readF32(absmax);
      for (const [off, q] of [[at(pad), want.qm], [at(a.total + pad), want.qv]] as const) {
        for (let i = 0; i < n; i++) {
          codesCompared++;
          if (c[off + i] === q[i]) continue;
          codesDiffer++;
          assert.ok(Math.abs(c[off + i] - q[i]) <= 1, `${what}: code ${c[off + i]} vs ${q[i]} at ${i}`);
        }
      }
      for (const [off, want1] of [[pad, want.absm], [a.total + pad, want.absv]] as const) {
        for (let b = 0; b < a.blocks; b++) {
          assert.ok(Math.abs(am[off + b] - want1[b]) <= want1[b] * 2 ** -21, `${what}: absmax[${b}] ${am[off + b]} vs ${want1[b]}`);
        }
      }
      if (n >= 512) {
        assert.equal(am[pad + 1], 0, `${what}: zero-gradient block has m absmax 0`);
        assert.ok(c.subarray(at(pad + 1), at(pad + 2)).every((x) => x === zeroCode(M_MAP)), "its m codes are the code of 0.0");
      }
      // codes past n in the last block hold the code of 0.0; padding blocks are untouched
      assert.ok(c.subarray(at(pad) + n, at(pad + a.blocks)).every((x) => x === zeroCode(M_MAP)), `${what}: m codes past n`);
      assert.deepEqual(c.subarray(0, at(pad)), a.codes.subarray(0, at(pad)), `${what}: codes of the block before`);
      assert.deepEqual(c.subarray(at(pad + a.blocks), at(a.total)), a.codes.subarray(at(pad + a.blocks), at(a.total)), `${what}: codes of the block after`);
      for (let b = 0; b < a.total; b++) {
        if (b >= pad && b < pad + a.blocks) continue;
        assert.deepEqual([am[b], am[a.total + b]], [a.absmax[b], a.absmax[a.total + b]], `${what}: absmax of padding block ${b}`);
      }
      grad.release();
    }
    for (const t of [param, codes, absmax]) t.release();
  }
  tables.release();
  console.log(`  ${codesDiffer} of ${codesCompared} codes one code away from the reference`);
  assert.ok(codesDiffer <= 0.001 * codesCompared, `${codesDiffer} of ${codesCompared} codes differ`);
});

Deno.test("adamw_8bit: quantize(dequantize(q)) gives back q and its absmax (also blocks whose largest |m| is negative)", () => {
  for (const [t, square] of [[M_MAP, false], [V_MAP, true]] as const) {
    let negativeMax = 0;
    for (const scale of [1, 1e-3, 1e-7]) {
      const x = randn(256 * 40 + 17, 77, scale);
      if (square) x.forEach((v, i) => x[i] = v * v);
      x.fill(0, 256, 512);
      const q = quantize8(x, t);
      const d = dequantize8(q.codes, q.absmax, t);
      const back = quantize8(d, t, true);
      assert.deepEqual(back.codes, q.codes);
      assert.deepEqual(back.absmax, q.absmax);
      assert.equal(q.absmax[1], 0);
      negativeMax += q.absmax.filter((a, b) => a > 0 && !d.subarray(b * 256, b * 256 + 256).includes(a)).length;
    }
    if (t === M_MAP) assert.ok(negativeMax > 20, `${negativeMax} blocks whose largest |m| is negative`);
  }
});

Deno.test("AdamW8bit optimizer: readState -> writeState -> readState is exact after GPU steps, in arenas over several slots", async () => {
  const gpu = await testGpu();
  const sizes = [[3, 50], [8, 64], [1, 1], [64, 33]];
  const slots = sizes.map(([r, c], i) => ({
    key: `t${i}`,
    param: gpu.upload(randn(r * c, 5 + i), [r, c], "f32", "lora"),
    grad: gpu.zeros([r, c], "f32", "gradients"),
  }));
  const before = gpu.memoryByCategory().optimizer ?? 0;
  // tiny arenas: the slots spread over several
  const opt = new AdamW8bit(gpu, slots, 4);
  const bytes8 = (gpu.memoryByCategory().optimizer ?? 0) - before;
  for (let step = 1; step <= 3; step++) {
    slots.forEach((s, i) => gpu.write(s.grad, randn(s.param.size, 100 * step + i, 0.1)));
    await opt.step({ lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step, gradScale: 0.5 });
  }
  for (const s of slots) {
    const q = await opt.readQuantized(s.key);
    const st = await opt.readState(s.key);
    assert.ok(st.m.some((x) => x !== 0) && st.v.some((x) => x > 0), `${s.key}: state moved`);
    opt.writeState(s.key, st.m, st.v);
    assert.deepEqual(await opt.readQuantized(s.key), q, `${s.key}: same codes and absmax`);
    assert.deepEqual(await opt.readState(s.key), st, `${s.key}: same m and v`);
  }
  assert.throws(() => opt.writeState("t0", new Float32Array(3), new Float32Array(150)), /optimizer state has 3\/150 values, the tensor 150/);
  await assert.rejects(opt.readState("nope"), /no optimizer state for nope/);
  opt.release();
  const resident = createOptimizer(gpu, "adamw", slots);
  const bytes32 = (gpu.memoryByCategory().optimizer ?? 0) - before;
  resident.release();
  console.log(`  optimizer GPU bytes: adamw_8bit ${bytes8}, adamw ${bytes32}`);
  assert.ok(bytes8 < 0.5 * bytes32, `${bytes8} vs ${bytes32}`);
  for (const s of slots) s.param.release(), s.grad.release();
});

Deno.test("adamw_8bit: bad input raises PeftError naming the problem", async () => {
  const gpu = await testGpu();
  const tables = adamw8bitTables(gpu);
  const p = gpu.tensor([300]), g = gpu.tensor([300]), g2 = gpu.tensor([299]);
  const codes = gpu.tensor([2 * 2 * 64], "u32"), absmax = gpu.tensor([4]), fcodes = gpu.tensor([2 * 2 * 64]);
  const o: AdamwOptions = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
  const s = { param: p, grad: g, codes, absmax, tables };
  adamw8bitStep(gpu, s, o);
  assert.throws(() => adamw8bitStep(gpu, s, { ...o, step: 0 }), /step = 0 must be an integer >= 1/);
  assert.throws(() => adamw8bitStep(gpu, s, { ...o, lr: -1 }), /lr = -1 must be a finite number >= 0/);
  assert.throws(() => adamw8bitStep(gpu, { ...s, grad: g2 }, o), /grad \[299\] f32 must match param \[300\]/);
  assert.throws(() => adamw8bitStep(gpu, { ...s, codes: fcodes }, o), /codes must be u32 \[256\] for 2 blocks/);
  assert.throws(() => adamw8bitStep(gpu, { ...s, blockOffset: 1 }, o), /blocks 1\.\.3 of a 300-value tensor are outside the state's 2 blocks/);
  assert.throws(() => adamw8bitStep(gpu, { ...s, tables: g }, o), /tables must be adamw8bitTables/);
  assert.throws(() => createOptimizer(gpu, "sgd" as "adamw", []), /optimizer must be one of adamw, paged_adamw, adamw_8bit/);
  for (const t of [tables, p, g, g2, codes, absmax, fcodes]) t.release();
});
