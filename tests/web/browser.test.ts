/// <reference lib="dom" />
/**
 * The page (web/) in a real headless Chromium (Debian's `chromium`, WebGPU on SwiftShader),
 * driven by puppeteer-core: the browser bundle loads stories260K, trains a LoRA adapter in a Web
 * Worker, generates, and hands out PEFT files that Deno loads and generates the same greedy text
 * from. Also the page's clear messages: no WebGPU, a file that is not GGUF, a run over the GPU
 * memory budget. The screenshot of the finished page lands in test-output/web/ (or $TEST_OUTPUT).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { loadModel } from "../../src/api/model.ts";
import { launchChromium, PageDriver, parseLossReadout } from "../../web/drive.ts";
import { serveWeb } from "../../web/serve.ts";
import { STORIES, testGpu } from "../helpers.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const OUT = Deno.env.get("TEST_OUTPUT") ? `${Deno.env.get("TEST_OUTPUT")}/web` : `${root}test-output/web`;
const PROMPT = "Once upon a time";
const MAX_TOKENS = 30;

execFileSync("node", ["scripts/bundle.mjs", "--browser"], { cwd: root, stdio: "inherit" });
const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({ name: "web page: without WebGPU it says which browsers and flags have it", ...opts }, async () => {
  const server = await serveWeb({ port: 0 });
  const browser = await launchChromium({ webgpu: false });
  try {
    const page = await PageDriver.open(browser, server.url);
    assert.equal(await page.flag("gpu"), "unavailable");
    const error = await page.error();
    assert.match(error, /^WebGPU is not available\./);
    assert.match(error, /Chrome and Edge 113\+/);
    assert.match(error, /--enable-unsafe-webgpu/);
    assert.equal(await page.page.$eval("#train", (b) => (b as HTMLButtonElement).disabled), true);
    await Deno.mkdir(OUT, { recursive: true });
    await page.screenshot(`${OUT}/no-webgpu.png`);
  } finally {
    await browser.close();
    await server.shutdown();
  }
});

Deno.test({
  name: "web page: clear errors, Stop, every method, a 10-step fine-tune whose downloaded files give Deno the page's greedy text",
  ...opts,
}, async () => {
  await Deno.mkdir(OUT, { recursive: true });
  const work = await Deno.makeTempDir({ prefix: "web-test-" });
  const server = await serveWeb({ port: 0 });
  const browser = await launchChromium({ webgpu: true });
  try {
    const page = await PageDriver.open(browser, server.url);
    assert.equal(await page.flag("model"), "loaded", await page.error());
    assert.match(await page.text("model-info"), /^stories260K\.gguf: 292,800 parameters, 5 layers/);

    // A file that is not GGUF: the page names it and keeps the model it had.
    const notGguf = `${work}/notes.gguf`;
    await Deno.writeTextFile(notGguf, "these are notes, not a model\n");
    assert.equal(await page.loadModel(notGguf), "failed");
    assert.match(await page.error(), /^This file is not a GGUF model\. notes\.gguf: not a GGUF file \(magic 0x[0-9a-f]{8}, expected "GGUF"\)/);
    assert.match(await page.text("model-info"), /Still using stories260K\.gguf/);
    assert.equal(await page.until("model", ["loaded", "failed"], () => page.click("model-default")), "loaded");

    // The memory planner refuses a run over the budget, with its own message.
    await page.click("data-sample");
    await page.page.waitForFunction(() => (document.getElementById("data") as HTMLTextAreaElement).value.length > 0);
    await page.set({ steps: "10", "seq-len": "32", "batch-size": "4", lr: "0.01", budget: "0.25" });
    const refused = await page.train();
    assert.equal(refused.state, "failed");
    assert.match(await page.error(), /^This run does not fit the GPU memory budget\. training needs about [\d.]+ MiB of GPU memory, over the budget of 0\.25 MiB\n/);

    // Stop (the worker trains, the page keeps answering): the adapter keeps the last finished step.
    await page.set({ steps: "200", "seq-len": "16", "batch-size": "1", budget: "" });
    await page.until("train", ["running"], () => page.click("train"));
    await page.page.waitForFunction(() => /^Step [2-9]\//.test(document.getElementById("progress")!.textContent ?? ""), { timeout: 120_000 });
    await page.click("stop");
    assert.equal(await page.waitFor("train", ["done", "stopped", "failed"]), "stopped", await page.error());
    assert.match(await page.text("progress"), /^Stopped at step (\d+) of 200 after .*; the adapter keeps step \1's weights\.$/);
    assert.equal(await page.waitFor("adapter", ["ready"]), "ready");

    // Every PEFT method of the page's menu trains (2 short steps each); a bad target is one clear error.
    const labels: Record<string, RegExp> = {
      DORA: /^DoRA r=8 alpha=16; 9,440 parameters/, IA3: /^\(IA\)³ on \["k_proj","v_proj","down_proj"\] \(feedforward \["down_proj"\]\); 1,180/,
      LN_TUNING: /^LN tuning of \["input_layernorm","post_attention_layernorm","norm"\]; 704/, BITFIT: /^BitFit biases on "all-linear"; 3,000/,
      PARTIAL: /^partial fine-tuning of "all"; 227,200/,
      // 20 x 64 prompt rows; P-tuning's MLP encoder adds three 64 x 64 linears with biases; the prefix is 20 x (5 layers x K,V x 32);
      // seq_bn: 5 layers x (64->4 and 4->64, with biases); MAM: the prefix and par_bn's 5 x (64->32 and 32->64).
      PROMPT_TUNING: /^prompt tuning, 20 virtual tokens \(init RANDOM\); 1,280 parameters/,
      P_TUNING: /^P-tuning, 20 virtual tokens \(MLP encoder\); 13,760 parameters/,
      PREFIX_TUNING: /^prefix tuning, 20 virtual tokens; 6,400 parameters/,
      BOTTLENECK: /^bottleneck adapter \(Pfeiffer\), reduction 16; 2,900 parameters/,
      MAM: /^hybrid of prefix: prefix tuning, 20 virtual tokens; adapter: bottleneck adapter \(parallel\), reduction 2; 27,360 parameters/,
    };
    await page.set({ steps: "2" });
    for (const [method, label] of Object.entries(labels)) {
      await page.set({ method });
      const r = await page.train();
      assert.equal(r.state, "done", `${method}: ${await page.error()}`);
      assert.match((await page.text("adapter-info")).replace(/^Active adapter: /, ""), label);
    }
    await page.set({ method: "LORA", targets: "q_proj,nonsense" });
    assert.equal((await page.train()).state, "failed");
    assert.match(await page.error(), /^Training failed\. LoRA target_modules: 'nonsense' matches no module of this model; available module names: q_proj, /);

    // Train 10 steps; the page's readout shows the loss falling.
    await page.set({ targets: "q_proj,v_proj", "seq-len": "32", "batch-size": "4", steps: "10" });
    const run = await page.train();
    assert.equal(run.state, "done", `${run.progress} ${await page.error()}`);
    assert.match(run.progress, /^Done: 10 steps in /);
    const [first, last] = parseLossReadout(run.readout);
    assert.ok(last < first - 0.1, `loss did not fall: ${run.readout}`);
    assert.match(await page.page.$eval("#chart", (c) => c.innerHTML), /<svg[\s\S]*train loss/);

    await page.set({ prompt: PROMPT, "max-tokens": String(MAX_TOKENS), temperature: "0" });
    const gen = await page.generate();
    assert.ok(gen.adapter.startsWith(PROMPT) && gen.base.startsWith(PROMPT), JSON.stringify(gen));
    assert.notEqual(gen.adapter, gen.base, "the adapter changed nothing");
    assert.match(gen.adapterInfo, new RegExp(`^${MAX_TOKENS} tokens, [\\d.]+ tokens/s decoding \\(adapter trained\\)`));

    const names = await page.download(work);
    assert.deepEqual(names.sort(), ["adapter.gguf", "adapter_config.json", "adapter_model.safetensors"]);

    // Loading the downloaded files back in the page gives the same text.
    assert.equal(await page.loadAdapter([`${work}/adapter_config.json`, `${work}/adapter_model.safetensors`]), "loaded", await page.error());
    assert.match(await page.text("adapter-info"), /^Active adapter: LoRA r=8 alpha=16; 8,960 parameters \(loaded from adapter_config\.json \+ adapter_model\.safetensors\)\.$/);
    const again = await page.generate();
    assert.equal(again.adapter, gen.adapter);
    assert.match(again.adapterInfo, /\(adapter loaded-1\)/);
    await page.screenshot(`${OUT}/finished.png`);

    // Deno (lavapipe) on the same model and prompt: the same greedy text, base and adapter.
    const model = await loadModel(STORIES, { gpu: await testGpu() });
    try {
      await model.loadAdapter("downloaded", work);
      const g = { maxTokens: MAX_TOKENS, temperature: 0 };
      assert.equal(PROMPT + await model.complete(PROMPT, { ...g, adapters: [] }), gen.base);
      assert.equal(PROMPT + await model.complete(PROMPT, { ...g, adapter: "downloaded" }), gen.adapter);
      // The page's llama.cpp LoRA GGUF is the file Deno exports for the same adapter (tests/cli/export_llamacpp.test.ts runs those in llama.cpp).
      // (Its general.name is the adapter's name, "trained" in the page.)
      await model.loadAdapter("trained", work);
      assert.deepEqual(await Deno.readFile(`${work}/adapter.gguf`), await model.saveAdapterGguf("trained"));
      const config = JSON.parse(await Deno.readTextFile(`${work}/adapter_config.json`));
      assert.equal(config.peft_type, "LORA");
      assert.equal(config.base_model_name_or_path, "stories260K.gguf");
    } finally {
      model.close();
    }
  } finally {
    await browser.close();
    await server.shutdown();
    await Deno.remove(work, { recursive: true });
  }
});
