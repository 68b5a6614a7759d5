/**
 * A training run's output directory: checked before step 1 (so a run never fails only at the
 * end because `adapter` is a file or the directory is read-only), cleared of the temporaries a
 * killed run left behind, and written to in a way that never leaves half a file or half a
 * checkpoint: files via writeFileAtomic, checkpoint directories via writeDirAtomic. Every
 * failure (ENOSPC included) is one PeftError naming the path.
 */
import { join, mkdir, readdir, rename, rm, stat, writeFile } from "../util/host.ts";
import { PeftError } from "../errors.ts";
import { writeFileAtomic } from "../io/bytes.ts";

/**
 * Temporary checkpoint directories (writeDirAtomic), checkpoints renamed for deletion
 * (save_total_limit, checkpoints.ts) and files (writeFileAtomic) of a killed run.
 */
const STALE = /^checkpoint-\d+\.(?:tmp|deleting)-[a-z0-9]+$|^(?:metrics\.jsonl|loss\.svg|trainer_state\.json|config\.resolved\.yaml)\.[a-z0-9]+\.tmp$/;

/** What the run writes, and what each must be if it already exists. */
const OUTPUTS: [string, "file" | "directory"][] = [["adapter", "directory"], ["metrics.jsonl", "file"], ["loss.svg", "file"]];

function notWritable(path: string, e: unknown): PeftError {
  return new PeftError("OUTPUT_DIR_NOT_WRITABLE", `output path ${path} is not writable: ${(e as Error).message}`, { cause: e });
}

/**
 * Makes `dir` (and parents), proves it writable, checks every output path the run will write,
 * and removes stale temporaries. Returns the names removed.
 */
export async function prepareOutputDir(dir: string): Promise<string[]> {
  try {
    await mkdir(dir, { recursive: true });
    const probe = join(dir, `.write-test-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`);
    await writeFile(probe, "ok");
    await rm(probe, { force: true });
  } catch (e) {
    throw notWritable(dir, e);
  }
  for (const [name, kind] of OUTPUTS) {
    const path = join(dir, name);
    const info = await stat(path).catch(() => null);
    if (info && (kind === "directory" ? !info.isDirectory() : !info.isFile())) {
      throw new PeftError("OUTPUT_DIR_NOT_WRITABLE", `${path} exists and is not a ${kind}: the run writes its ${name} there (move it away or choose another output directory)`);
    }
  }
  const removed: string[] = [];
  for (const name of await readdir(dir)) {
    if (!STALE.test(name)) continue;
    try {
      await rm(join(dir, name), { recursive: true, force: true });
    } catch (e) {
      throw notWritable(join(dir, name), e);
    }
    removed.push(name);
  }
  return removed;
}

/**
 * Writes a directory atomically: `fill` writes into a temporary sibling, which then replaces
 * `dir`. On any failure the temporary is removed and the directories already there (the last
 * good checkpoint) are untouched; the error is a PeftError naming the path.
 */
export async function writeDirAtomic(dir: string, fill: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = `${dir}.tmp-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  try {
    await mkdir(tmp, { recursive: true });
    await fill(tmp);
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw e instanceof PeftError ? e : new PeftError("WRITE_FAILED", `cannot write ${dir}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Writes a file of the run atomically. `failure` is the error the run is already ending with,
 * if any (this is called from a finally block): a second write error must not hide the first.
 */
export async function writeRunFile(path: string, content: string, failure?: unknown): Promise<void> {
  try {
    await writeFileAtomic(path, new TextEncoder().encode(content));
  } catch (e) {
    if (failure === undefined) throw e;
  }
}
