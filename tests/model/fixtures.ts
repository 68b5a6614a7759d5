/** Readers for the PyTorch-made fixtures in tests/fixtures (see scripts/dev/). */
import { readFile } from "node:fs/promises";

export interface LogitsFixture { cases: { ids: number[]; logits: number[][] }[] }
export async function loadLogitsFixture(): Promise<LogitsFixture> {
  return JSON.parse(await readFile(new URL("../fixtures/stories260K_logits.json", import.meta.url), "utf8"));
}

export interface LoraGradFixture {
  r: number;
  lora_alpha: number;
  modules: string[];
  inputs: number[][];
  targets: number[][];
  loss: number;
  grads: { layer: number; module: string; part: "A" | "B"; shape: number[]; offset: number; data: Float32Array }[];
}
export async function loadLoraGradFixture(): Promise<LoraGradFixture> {
  const base = new URL("../fixtures/stories260K_lora_grads", import.meta.url);
  const meta = JSON.parse(await readFile(new URL(base.href + ".json"), "utf8"));
  const bin = await readFile(new URL(base.href + ".bin"));
  const all = new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength));
  for (const g of meta.grads) g.data = all.subarray(g.offset, g.offset + g.shape[0] * g.shape[1]);
  return meta;
}
