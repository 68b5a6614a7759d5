/**
 * A short CLI fine-tune on a given runtime must learn. Bun's device once got WebGPU's default
 * limits, Dawn rejected attention's backward pipelines, and training printed loss 0.0000 at every
 * step and saved an adapter whose lora_B were all exactly zero, with exit code 0.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import process from "node:process";
import { readSafetensors } from "../../src/io/safetensors.ts";
import { SHARED, STORIES } from "../helpers.ts";

export async function assertTrainingLearns(label: string, bin: string, prefix: string[], cwd: string): Promise<void> {
  const out = await Deno.makeTempDir({ prefix: `train-${label}-` });
  try {
    const r = spawnSync(bin, [
      ...prefix, "train", "--model", STORIES, "--data", `${SHARED}data/tinyshakespeare.txt`, "--out", out,
      "--max-steps", "8", "--seq-len", "32", "--batch-size", "4", "--lr", "5e-3", "--max-examples", "80", "--seed", "3",
    ], { cwd, encoding: "utf8", timeout: 240_000, env: { ...process.env, EGL_PLATFORM: "surfaceless" } });
    assert.equal(r.status, 0, `${label} exited ${r.status} ${r.signal ?? ""}: ${r.stderr}\n${r.stdout}`);
    const evals = [...r.stdout.matchAll(/eval step \d+ \| loss ([\d.]+)/g)].map((m) => Number(m[1]));
    assert.ok(evals.length >= 2, `${label}: no eval lines in\n${r.stdout}`);
    assert.ok(evals.at(-1)! < evals[0] - 0.2, `${label}: eval loss did not fall: ${evals.join(" -> ")}`);
    const steps = [...r.stdout.matchAll(/step \d+\/8 \| loss ([\d.]+)/g)].map((m) => Number(m[1]));
    assert.ok(steps.length === 8 && steps.every((l) => l > 1), `${label}: step losses ${steps.join(", ")}`);
    const st = await readSafetensors(`${out}/adapter/adapter_model.safetensors`);
    try {
      const bs = [...st.tensors.keys()].filter((k) => k.endsWith("lora_B.weight"));
      assert.ok(bs.length > 0, `${label}: no lora_B tensors`);
      for (const k of bs) assert.ok((await st.readF32(k)).some((v) => v !== 0), `${label}: ${k} is all zeros`);
    } finally {
      await st.close();
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}
