/**
 * The library in a web page beside Deno, same run, same model, same work: headless Chromium
 * (Debian's chromium, WebGPU on SwiftShader; dist/edge-peft.browser.js imported by a page served
 * by web/serve.ts) against Deno (WebGPU on Mesa's lavapipe; browser.ts from source). Both run the
 * one `measure` function below (its source is sent to the page), on stories260K:
 *   - LoRA training (r=8, alpha 16 on q_proj, v_proj; tinyshakespeare text): tokens/s is
 *     batch*seq over the median optimizer-step time, the first (pipeline-compiling) step excluded;
 *   - greedy decoding: tokens/s of the decode phase (prefill excluded) after a warm-up generation;
 *   - what a training step costs the GPU queue (dispatches, submits, readbacks per step) and the
 *     median time of one empty round trip (submit + map a 16-byte buffer), which explain the gap.
 *
 *   node scripts/bundle.mjs --browser && deno run -A bench/browser.ts [--quick]
 */
/// <reference lib="dom" />
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as lib from "../browser.ts";
import type { Model } from "../browser.ts";
import { launchChromium } from "../web/drive.ts";
import { serveWeb } from "../web/serve.ts";
import { SHARED, STORIES260K } from "./lib/random_llama.ts";

const quick = Deno.args.includes("--quick");
const cfg = { batch: 4, seq: 32, steps: quick ? 4 : 8, decodeTokens: quick ? 32 : 64, prompt: "Once upon a time" };
type Cfg = typeof cfg;
interface Figures {
  trainTokS: number;
  stepMs: number;
  firstStepMs: number;
  decodeTokS: number;
  prefillMs: number;
  device: string;
  perStep: { dispatches: number; submits: number; readbacks: number };
  roundTripMs: number;
}

/** Runs in Deno and, as source text, in the page: uses only its arguments. */
async function measure(l: typeof lib, model: Model, text: string, c: Cfg): Promise<Figures> {
  model.addAdapter("bench", { peft_type: "LORA", r: 8, lora_alpha: 16, lora_dropout: 0, target_modules: ["q_proj", "v_proj"] }, 0);
  const stamps: number[] = [];
  const s0 = { ...model.gpu.stats };
  const t0 = performance.now();
  await l.train(model, {
    adapter: "bench", data: { text }, seqLen: c.seq, batchSize: c.batch, maxSteps: c.steps, learningRate: 2e-4, progress: false,
    onStep: () => stamps.push(performance.now()),
  });
  const s1 = model.gpu.stats;
  const perStep = {
    dispatches: (s1.dispatches - s0.dispatches) / c.steps, submits: (s1.submits - s0.submits) / c.steps, readbacks: (s1.readbacks - s0.readbacks) / c.steps,
  };
  const steps = stamps.map((s, i) => s - (i ? stamps[i - 1] : t0));
  const rest = steps.slice(1).sort((a, b) => a - b);
  const median = rest[Math.floor(rest.length / 2)];
  const g = { maxTokens: c.decodeTokens, temperature: 0, adapter: "bench" };
  await model.complete(c.prompt, { ...g, maxTokens: 8 }); // warm-up: decode pipelines compiled
  const it = model.generateStream(c.prompt, g);
  let r = await it.next();
  while (!r.done) r = await it.next();
  const probe = model.gpu.upload(new Float32Array(4), [4], "f32", "other");
  const trips: number[] = [];
  for (let i = 0; i < 15; i++) {
    const t = performance.now();
    await model.gpu.readF32(probe);
    trips.push(performance.now() - t);
  }
  probe.release();
  trips.sort((a, b) => a - b);
  return {
    trainTokS: (c.batch * c.seq) / (median / 1000), stepMs: median, firstStepMs: steps[0],
    decodeTokS: r.value.completionTokens / (r.value.decodeMs / 1000), prefillMs: r.value.prefillMs, device: model.gpu.info.description,
    perStep, roundTripMs: trips[Math.floor(trips.length / 2)],
  };
}

const root = fileURLToPath(new URL("../", import.meta.url));
execFileSync("node", ["scripts/bundle.mjs", "--browser"], { cwd: root, stdio: "inherit" });
const text = (await Deno.readTextFile(`${SHARED}data/tinyshakespeare.txt`)).slice(0, 20_000);

const server = await serveWeb({ port: 0 });
const browser = await launchChromium({ webgpu: true });
let inPage: Figures;
try {
  const page = await browser.newPage();
  await page.goto(`${server.url}data/tinyshakespeare.txt`); // any page of the server: same origin as the bundle
  inPage = await page.evaluate(`(async () => {
    const l = await import("/dist/edge-peft.browser.js");
    const blob = await (await fetch("/models/stories260K.gguf")).blob();
    const model = await l.loadModel(blob, { name: "stories260K.gguf" });
    try {
      return await (${measure.toString()})(l, model, ${JSON.stringify(text)}, ${JSON.stringify(cfg)});
    } finally {
      model.close();
    }
  })()`) as Figures;
} finally {
  await browser.close();
  await server.shutdown();
}

const model = await lib.loadModel(STORIES260K);
let inDeno: Figures;
try {
  inDeno = await measure(lib, model, text, cfg);
} finally {
  model.close();
}

console.log(`# The library in headless Chromium vs Deno, stories260K, same run`);
console.log(`LoRA r=8 on q_proj, v_proj; batch ${cfg.batch} x seq ${cfg.seq}, ${cfg.steps} steps (median, first excluded); greedy decode of ${cfg.decodeTokens} tokens\n`);
console.log(`| runtime | WebGPU adapter | training tokens/s | step ms | first step ms | decode tokens/s | prefill ms | per step: dispatches / submits / readbacks | empty round trip ms |`);
console.log(`| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`);
for (const [name, f] of [["Chromium (page, dist/edge-peft.browser.js)", inPage], ["Deno (browser.ts from source)", inDeno]] as const) {
  const p = f.perStep;
  console.log(
    `| ${name} | ${f.device} | ${f.trainTokS.toFixed(0)} | ${f.stepMs.toFixed(0)} | ${f.firstStepMs.toFixed(0)} | ${f.decodeTokS.toFixed(1)} | ${f.prefillMs.toFixed(0)} | ` +
      `${p.dispatches.toFixed(0)} / ${p.submits.toFixed(1)} / ${p.readbacks.toFixed(1)} | ${f.roundTripMs.toFixed(2)} |`,
  );
}
console.log(`\nChromium / Deno: training ${(inPage.trainTokS / inDeno.trainTokS).toFixed(2)}x, decode ${(inPage.decodeTokS / inDeno.decodeTokS).toFixed(2)}x`);
