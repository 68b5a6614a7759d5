/**
 * Checkpoints in the output directory, as transformers names them: `checkpoint-<step>/` holding
 * the adapter (HF PEFT files), the optimizer's moments (optimizer.safetensors) and
 * trainer_state.json. Each is written to a temporary directory and renamed into place
 * (output_dir.ts), so a crash never leaves half a checkpoint; `save_total_limit` rotation renames a checkpoint out of the
 * `checkpoint-N` namespace before deleting it, so a crash mid-delete never leaves half of one
 * either (the leftover `*.deleting-*` directory is removed by the next rotation).
 */
import { join, readdir, readFile, rename, rm } from "../util/host.ts";
import { PeftError } from "../errors.ts";
import { readSafetensors, writeSafetensors } from "../io/safetensors.ts";
import { Adapter } from "../peft/adapter.ts";
import { writeDirAtomic, writeRunFile } from "./output_dir.ts";
import type { Optimizer } from "./paged_adamw.ts";
import type { TrainableModel } from "./trainer.ts";

const CHECKPOINT = /^checkpoint-(\d+)$/;

const suffix = () => `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;

/** The adapter (in its training form), the optimizer's moments and trainer_state.json, written as one directory (writeDirAtomic). */
export async function writeCheckpoint(model: TrainableModel, name: string, opt: Optimizer, dir: string, state: Record<string, unknown>): Promise<void> {
  await writeDirAtomic(dir, async (tmp) => {
    await model.adapter(name).save(tmp, model.source, { training: true });
    const tensors = [];
    for (const s of opt.slots) {
      const { m, v } = await opt.readState(s.key);
      tensors.push({ name: `${s.key}.exp_avg`, dtype: "F32" as const, shape: s.param.shape, data: m });
      tensors.push({ name: `${s.key}.exp_avg_sq`, dtype: "F32" as const, shape: s.param.shape, data: v });
    }
    await writeSafetensors(join(tmp, "optimizer.safetensors"), tensors);
    await writeRunFile(join(tmp, "trainer_state.json"), JSON.stringify(state, null, 2));
  });
}

/** The checkpoints in outputDir, oldest (lowest step) first; [] when there is no such directory. */
export async function listCheckpoints(outputDir: string): Promise<{ step: number; dir: string }[]> {
  let names: string[];
  try {
    names = await readdir(outputDir);
  } catch {
    return [];
  }
  return names.map((n) => CHECKPOINT.exec(n)).filter((m) => m !== null).map((m) => ({ step: Number(m![1]), dir: join(outputDir, m![0]) }))
    .sort((a, b) => a.step - b.step);
}

export async function latestCheckpoint(outputDir: string): Promise<string | null> {
  return (await listCheckpoints(outputDir)).at(-1)?.dir ?? null;
}

export async function readTrainerState(dir: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readFile(join(dir, "trainer_state.json"), "utf8"));
  } catch (e) {
    throw new PeftError("CHECKPOINT_INVALID", `${dir}: cannot read trainer_state.json: ${(e as Error).message}`);
  }
}

/** Copies a checkpoint's adapter weights into the model's adapter `name` (same method and shapes). */
export async function restoreAdapter(model: TrainableModel, name: string, dir: string): Promise<void> {
  const saved = await Adapter.load(model.llama.backend(), model.llama.config, `${name}@checkpoint`, dir);
  try {
    model.adapter(name).copyFrom(saved);
  } finally {
    model.gpu.flush();
    saved.release();
  }
}

/** The adapter and the optimizer state of a checkpoint; returns its trainer_state.json. */
export async function restoreCheckpoint(model: TrainableModel, name: string, opt: Optimizer, dir: string): Promise<Record<string, unknown>> {
  const state = await readTrainerState(dir);
  await restoreAdapter(model, name, dir);
  const file = await readSafetensors(join(dir, "optimizer.safetensors"));
  try {
    for (const s of opt.slots) {
      const get = async (suffix: string) => {
        const key = `${s.key}.${suffix}`;
        if (!file.tensors.has(key)) throw new PeftError("CHECKPOINT_INVALID", `${dir}/optimizer.safetensors: missing ${key}`);
        return await file.readF32(key);
      };
      opt.writeState(s.key, await get("exp_avg"), await get("exp_avg_sq"));
    }
  } finally {
    await file.close();
  }
  return state;
}

/**
 * save_total_limit: keeps the `limit` newest checkpoints up to `step` (and `keep`, the best one
 * when load_best_model_at_end, as transformers does); deletes only older ones. Checkpoints of a
 * later step (left by an earlier, longer run) are never touched. Returns the deleted directories.
 */
export async function rotateCheckpoints(outputDir: string, o: { limit: number; step: number; keep?: string }): Promise<string[]> {
  const upTo = (await listCheckpoints(outputDir)).filter((c) => c.step <= o.step);
  const kept = new Set(upTo.slice(-o.limit).map((c) => c.dir));
  if (o.keep) kept.add(o.keep);
  const deleted: string[] = [];
  for (const c of upTo) {
    if (kept.has(c.dir)) continue;
    const gone = `${c.dir}.deleting-${suffix()}`;
    await rename(c.dir, gone); // atomic: from here on it is no checkpoint
    await rm(gone, { recursive: true, force: true });
    deleted.push(c.dir);
  }
  return deleted;
}
