import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../src/api/model.ts";
import { train } from "../../src/train/trainer.ts";
import { STORIES, testGpu } from "../helpers.ts";
import { SHAKESPEARE, TEST_LORA, trainedAdapter } from "../shared_adapter.ts";

const tmp = (p: string) => mkdtemp(join(tmpdir(), p));

Deno.test("LoRA fine-tune on tinyshakespeare lowers the held-out eval loss by >= 15%", async () => {
  const { result, outputDir } = await trainedAdapter();
  const before = result.initialEvalLoss!, after = result.finalEvalLoss!;
  console.log(`  eval loss ${before.toFixed(4)} -> ${after.toFixed(4)} (${(100 * (1 - after / before)).toFixed(1)}% lower) in ${result.steps} steps`);
  assert.equal(result.steps, 60);
  assert.ok(after <= 0.85 * before, `eval loss ${before} -> ${after} is not 15% lower`);
  const files = await readdir(outputDir);
  for (const f of ["metrics.jsonl", "loss.svg", "adapter", "checkpoint-60"]) assert.ok(files.includes(f), `${f} in ${files}`);
  const svg = await readFile(join(outputDir, "loss.svg"), "utf8");
  assert.match(svg, /^<svg[\s\S]*<\/svg>\s*$/);
  const lines = (await readFile(join(outputDir, "metrics.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.filter((l) => l.loss !== undefined).length, 60);
  assert.equal(lines.filter((l) => l.eval_loss !== undefined).length, 2);
});

Deno.test("trainable parameters follow PEFT's formula r·(in+out) per targeted module", async () => {
  const { model } = await trainedAdapter();
  const c = model.config;
  const a = model.adapter("shakespeare");
  const kv = c.nKvHeads * c.headDim;
  const perLayer = 8 * (c.dim + c.dim) * 2 + 8 * (c.dim + kv) * 2;
  assert.equal(a.trainableParameters, perLayer * c.nLayers);
  const line = model.printTrainableParameters("shakespeare");
  const all = model.baseParameters() + a.trainableParameters;
  assert.equal(line, `trainable params: ${a.trainableParameters.toLocaleString("en-US")} || all params: ${all.toLocaleString("en-US")} || trainable%: ${(100 * a.trainableParameters / all).toFixed(4)}`);
});

Deno.test("saved adapter loads back with bit-identical logits; merged logits equal unmerged within 1e-5", async () => {
  const { model, dir } = await trainedAdapter();
  const ids = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376];
  const base = await model.logits(ids);
  const trained = await model.logits(ids, { adapter: "shakespeare" });
  await model.loadAdapter("reloaded", dir);
  const reloaded = await model.logits(ids, { adapter: "reloaded" });
  assert.deepEqual(reloaded, trained, "save -> load gives the same logits bit for bit");
  assert.notDeepEqual(trained, base, "the adapter changes the model");

  await model.merge("reloaded");
  const merged = await model.logits(ids);
  let maxRel = 0;
  trained.forEach((row, t) => {
    const scale = Math.max(...row.map(Math.abs));
    row.forEach((v, i) => maxRel = Math.max(maxRel, Math.abs(merged[t][i] - v) / scale));
  });
  assert.ok(maxRel <= 1e-5, `merged vs unmerged max relative diff ${maxRel}`);

  const out = join(await tmp("peft-merged-"), "merged.gguf");
  await model.save(out);
  const exported = await loadModel(out, { gpu: model.gpu });
  assert.deepEqual(await exported.logits(ids), merged, "exported GGUF reproduces the merged model");
  exported.close();

  await model.unmerge("reloaded");
  const unmerged = await model.logits(ids);
  let maxBack = 0;
  base.forEach((row, t) => row.forEach((v, i) => maxBack = Math.max(maxBack, Math.abs(unmerged[t][i] - v))));
  assert.ok(maxBack < 1e-4, `unmerge restores the base logits (max diff ${maxBack})`);
  model.deleteAdapter("reloaded");
});

Deno.test("resume from a checkpoint reproduces the uninterrupted run's losses exactly", async () => {
  const gpu = await testGpu();
  const opts = {
    data: SHAKESPEARE, seqLen: 32, batchSize: 4, gradientAccumulationSteps: 2, learningRate: 2e-3, maxSteps: 6, seed: 3,
    maxExamples: 200, progress: false,
  };
  const full = await loadModel(STORIES, { gpu });
  full.addAdapter("a", TEST_LORA, 5);
  const ref = await train(full, { adapter: "a", ...opts, outputDir: await tmp("peft-full-") });
  full.close();

  const dir = await tmp("peft-resume-");
  const first = await loadModel(STORIES, { gpu });
  first.addAdapter("a", TEST_LORA, 5);
  const stop = new AbortController();
  const part = await train(first, { adapter: "a", ...opts, outputDir: dir, signal: stop.signal, onStep: (s) => s.step === 3 && stop.abort() });
  first.close();
  assert.equal(part.steps, 3);
  assert.ok(part.stoppedEarly);

  const second = await loadModel(STORIES, { gpu });
  second.addAdapter("a", TEST_LORA, 99); // different init: the checkpoint must overwrite it
  const rest = await train(second, { adapter: "a", ...opts, outputDir: dir, resume: true });
  second.close();
  assert.deepEqual([...part.losses, ...rest.losses], ref.losses);
});

Deno.test("bad training input gives clear errors", async () => {
  const gpu = await testGpu();
  const model = await loadModel(STORIES, { gpu });
  const dir = await tmp("peft-bad-");
  assert.throws(() => model.addAdapter("x", { r: 0 }), /r must be a positive integer|r/);
  assert.throws(() => model.addAdapter("x", { target_modules: ["nope_proj"] }), /nope_proj[\s\S]*q_proj/);
  model.addAdapter("a", TEST_LORA, 1);
  const empty = join(dir, "empty.txt");
  await writeFile(empty, "");
  await assert.rejects(train(model, { adapter: "a", data: empty, progress: false }), /empty/);
  const short = join(dir, "short.txt");
  await writeFile(short, "To be, or not to be");
  await assert.rejects(train(model, { adapter: "a", data: short, seqLen: 64, progress: false }), /needs at least/);
  await assert.rejects(train(model, { adapter: "a", data: join(dir, "missing.txt"), progress: false }), /missing\.txt/);
  await assert.rejects(train(model, { adapter: "nope", data: SHAKESPEARE, progress: false }), /no adapter named nope/);
  const blocker = join(dir, "file");
  await writeFile(blocker, "x");
  await assert.rejects(
    train(model, { adapter: "a", data: SHAKESPEARE, seqLen: 16, maxSteps: 1, maxExamples: 20, outputDir: join(blocker, "out"), progress: false }),
    /not writable/,
  );
  // A learning rate that blows up: training stops with NAN_LOSS before a bad update and the
  // last good checkpoint stays on disk.
  const out = join(dir, "nan");
  await assert.rejects(
    train(model, {
      adapter: "a", data: SHAKESPEARE, seqLen: 16, batchSize: 2, maxSteps: 8, maxExamples: 40, learningRate: 1e12, maxGradNorm: 0,
      saveSteps: 1, outputDir: out, progress: false,
    }),
    /loss became (NaN|Infinity)[\s\S]*last good checkpoint/,
  );
  const kept = (await readdir(out)).filter((f) => f.startsWith("checkpoint-"));
  assert.ok(kept.length >= 1, `a checkpoint is kept (${kept})`);
  model.close();
});
