/**
 * Shared setup for the server tests: the real stories260K model on the (software) GPU, two LoRA
 * adapters written to a temporary adapters directory (random non-zero B, so outputs differ from
 * the base), a third one outside it for uploads, and the greedy outputs each gives when run
 * sequentially in process — what every HTTP answer must equal.
 */
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type Model } from "../../src/api/model.ts";
import { testGpu, STORIES } from "../helpers.ts";

export const PROMPTS = ["Once upon a time", "The cat", "Lily and Tom went", "One day, a big dog", "She was happy"];
export const MAX_TOKENS = 8;
export const ADAPTERS = {
  alpha: { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"], seed: 11 },
  beta: { r: 2, lora_alpha: 4, target_modules: ["o_proj", "down_proj", "up_proj"], seed: 22 },
  gamma: { r: 4, lora_alpha: 16, target_modules: ["k_proj", "gate_proj"], seed: 33 },
} as const;
export type AdapterName = keyof typeof ADAPTERS;

export interface Fixture {
  model: Model;
  /** Contains alpha/ and beta/. */
  adaptersDir: string;
  /** gamma's PEFT directory (outside adaptersDir), for uploads. */
  gammaDir: string;
  gammaFiles: { config: string; weights: Uint8Array };
  /** expected[adapter or "base"][prompt] = greedy text of MAX_TOKENS tokens. */
  expected: Record<string, Record<string, string>>;
}

let shared: Promise<Fixture> | null = null;

export function fixture(): Promise<Fixture> {
  return shared ??= (async () => {
    const model = await loadModel(STORIES, { gpu: await testGpu() });
    const root = await mkdtemp(join(tmpdir(), "serve-test-"));
    const adaptersDir = join(root, "adapters");
    const gammaDir = join(root, "outside", "gamma");
    const expected: Record<string, Record<string, string>> = { base: {} };
    for (const p of PROMPTS) expected.base[p] = await model.complete(p, { maxTokens: MAX_TOKENS, temperature: 0 });
    for (const [name, a] of Object.entries(ADAPTERS)) {
      model.addAdapter(name, { r: a.r, lora_alpha: a.lora_alpha, target_modules: [...a.target_modules], init_lora_weights: false }, a.seed);
      expected[name] = {};
      for (const p of PROMPTS) expected[name][p] = await model.complete(p, { maxTokens: MAX_TOKENS, temperature: 0, adapter: name });
      await model.saveAdapter(name, name === "gamma" ? gammaDir : join(adaptersDir, name));
      model.deleteAdapter(name); // the server loads them from disk on first use
    }
    const gammaFiles = {
      config: await readFile(join(gammaDir, "adapter_config.json"), "utf8"),
      weights: await readFile(join(gammaDir, "adapter_model.safetensors")),
    };
    return { model, adaptersDir, gammaDir, gammaFiles, expected };
  })();
}

/** Parses an SSE body into its data payloads. */
export function sseData(text: string): string[] {
  const out: string[] = [];
  for (const event of text.split(/\r?\n\r?\n/)) {
    const lines = event.split(/\r?\n/).filter((l) => l.startsWith("data:"));
    if (lines.length) out.push(lines.map((l) => l.slice(5).replace(/^ /, "")).join("\n"));
  }
  return out;
}
