/**
 * The ragged-batch forward (paged KV cache, per-row rope, row-group hooks, the gathered LoRA
 * kernel) gives each sequence the logits the one-at-a-time forward gives it: base, LoRA of two
 * ranks, a weighted LoRA pair, DoRA, (IA)³, BitFit, prompt tuning, prefix tuning and a bottleneck
 * adapter in one batch, through a prefill step and decode steps; LN tuning (which replaces a norm
 * weight) alone in its own batch.
 */
import assert from "node:assert/strict";
import { loadModel } from "../../src/api/model.ts";
import { argmax } from "../../src/infer/sampler.ts";
import { type BatchSegment, forwardBatch } from "../../src/model/batch_forward.ts";
import { LoraBank } from "../../src/model/lora_bank.ts";
import { KvPool } from "../../src/model/paged_kv.ts";
import { sharesBaseWeights } from "../../src/model/row_groups.ts";
import { virtualTokens } from "../../src/model/sites.ts";
import type { AdapterSelection } from "../../src/peft/peft_model.ts";
import { assertClose, loraBs, randn, STORIES, testGpu } from "../helpers.ts";

const FIXTURES = new URL("../fixtures/methods/", import.meta.url).pathname;
const STEPS = 3;

Deno.test("forwardBatch: a mixed batch of every shareable method equals one-at-a-time inference, prefill and decode", async () => {
  const m = await loadModel(STORIES, { gpu: await testGpu() });
  const gpu = m.gpu;
  try {
    for (const [n, r, targets, seed] of [["r4", 4, ["q_proj", "v_proj", "gate_proj"], 1], ["r2", 2, ["o_proj", "down_proj"], 2]] as const) {
      const a = m.addAdapter(n, { r, lora_alpha: 2 * r, target_modules: [...targets] }, seed);
      for (const B of loraBs(a)) gpu.write(B, randn(B.size, 10 + seed, 0.2));
    }
    for (const f of ["dora", "ia3", "bitfit", "prompt_tuning", "prefix_tuning", "houlsby", "ln_tuning"]) await m.loadAdapter(f, `${FIXTURES}${f}`);
    const selections: AdapterSelection[] = [undefined, "r4", "r2", [{ name: "r4", weight: 0.5 }, { name: "r2", weight: -1 }], "r4", "dora", "ia3", "bitfit", "prompt_tuning", "prefix_tuning", "houlsby"];
    const prompts = selections.map((_, i) => m.encodePrompt(["Once upon a time", "The cat", "Lily", "One day, a big dog saw"][i % 4]));
    const hooks = selections.map((s) => s === undefined ? m.peft.hooksFor([]) : m.peft.hooksFor(s));
    for (const h of hooks) assert.ok(sharesBaseWeights(h, m.config));
    const ln = m.peft.hooksFor("ln_tuning");
    assert.equal(sharesBaseWeights(ln, m.config), false, "LN tuning replaces norm weights");

    // One at a time: the logits of each step.
    const expected: Float32Array[][] = [];
    for (const [i, ids] of prompts.entries()) {
      const steps: Float32Array[] = [];
      let pos = 0, input = ids;
      for (let s = 0; s <= STEPS; s++) {
        const t = m.llama.forward(input, pos, { hooks: hooks[i] });
        const logits = await gpu.readF32(t);
        t.release();
        pos += (s === 0 ? virtualTokens(hooks[i]) : 0) + input.length;
        steps.push(logits);
        input = [argmax(logits)];
      }
      expected.push(steps);
      m.llama.dropCache();
    }

    for (const bank of [undefined, new LoraBank(gpu)]) {
      const pool = new KvPool(gpu, m.config, { blockSize: 4, numBlocks: 64 });
      const tables = prompts.map((ids, i) => pool.allocate(pool.blocksFor(virtualTokens(hooks[i]) + ids.length + STEPS))!);
      let pos = prompts.map((_, i) => virtualTokens(hooks[i]));
      let inputs = prompts;
      for (let s = 0; s <= STEPS; s++) {
        // The two r4 rows are adjacent only in the first step: a group may also recur.
        const order = s === 0 ? [...prompts.keys()] : [...prompts.keys()].reverse();
        const segs: BatchSegment[] = order.map((i) => ({ ids: inputs[i], pos0: pos[i], table: tables[i], hooks: hooks[i], start: s === 0 }));
        const t = forwardBatch(m.llama, pool, segs, { bank });
        const flat = await gpu.readF32(t);
        t.release();
        const V = m.config.vocabSize;
        const next = [...inputs];
        order.forEach((i, row) => {
          const got = flat.subarray(row * V, (row + 1) * V);
          assertClose(got, expected[i][s], 1e-4, 1e-4, `sequence ${i} (${JSON.stringify(selections[i])}) step ${s}${bank ? " (bank)" : ""}`);
          next[i] = [argmax(expected[i][s])];
        });
        pos = pos.map((p, i) => p + inputs[i].length);
        inputs = next;
      }
      // LN tuning alone (its own batch), two sequences.
      const lnTables = [pool.allocate(2)!, pool.allocate(2)!];
      const t = forwardBatch(m.llama, pool, [0, 1].map((i) => ({ ids: prompts[i], pos0: 0, table: lnTables[i], hooks: ln, start: true })), { bank });
      const got = await gpu.readF32(t);
      t.release();
      for (const i of [0, 1]) {
        const r = m.llama.forward(prompts[i], 0, { hooks: ln });
        assertClose(got.subarray(i * m.config.vocabSize, (i + 1) * m.config.vocabSize), await gpu.readF32(r), 1e-4, 1e-4, `ln_tuning ${i}`);
        r.release();
      }
      m.llama.dropCache();
      for (const tb of [...tables, ...lnTables]) pool.free(tb);
      assert.equal(pool.blocksUsed, 0);
      pool.destroy();
      bank?.destroy();
    }
  } finally {
    m.close();
  }
});

Deno.test("forwardBatch: every model family (NEOX rope, Llama 3 rope factors, sliding windows, q/k/v biases, fused projections) equals one-at-a-time inference", async () => {
  const { FAMILY_SPECS, familyModel } = await import("../families/fixtures.ts");
  const gpu = await testGpu();
  for (const spec of FAMILY_SPECS) {
    const fm = await familyModel(spec.name);
    const m = await loadModel(fm.gguf, { gpu });
    try {
      const a = m.addAdapter("lora", { r: 4, lora_alpha: 8, target_modules: "all-linear" }, 3);
      for (const B of loraBs(a)) gpu.write(B, randn(B.size, 21, 0.2));
      const hooks = [m.peft.hooksFor([]), m.peft.hooksFor("lora")];
      // Prompts longer than the windows (6), decoded past them.
      const prompts = [fm.prompts[0].slice(0, 9), fm.prompts[0].slice(3, 14)];
      const expected: Float32Array[][] = [];
      for (const [i, ids] of prompts.entries()) {
        const steps: Float32Array[] = [];
        let pos = 0, input = ids;
        for (let s = 0; s <= STEPS; s++) {
          const t = m.llama.forward(input, pos, { hooks: hooks[i] });
          steps.push(await gpu.readF32(t));
          t.release();
          pos += input.length;
          input = [argmax(steps[s])];
        }
        expected.push(steps);
        m.llama.dropCache();
      }
      const pool = new KvPool(gpu, m.config, { blockSize: 4, numBlocks: 16 });
      const tables = prompts.map((ids) => pool.allocate(pool.blocksFor(ids.length + STEPS))!);
      let pos = [0, 0], inputs = prompts;
      for (let s = 0; s <= STEPS; s++) {
        const t = forwardBatch(m.llama, pool, prompts.map((_, i) => ({ ids: inputs[i], pos0: pos[i], table: tables[i], hooks: hooks[i], start: s === 0 })), {});
        const flat = await gpu.readF32(t);
        t.release();
        const V = m.config.vocabSize;
        for (const i of [0, 1]) assertClose(flat.subarray(i * V, (i + 1) * V), expected[i][s], 1e-4, 1e-4, `${spec.name} sequence ${i} step ${s}`);
        pos = pos.map((p, i) => p + inputs[i].length);
        inputs = expected.map((e) => [argmax(e[s])]);
      }
      for (const tb of tables) pool.free(tb);
      pool.destroy();
    } finally {
      m.close();
    }
  }
});
