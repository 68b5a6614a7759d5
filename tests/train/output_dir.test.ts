/**
 * Issue #17 finding 10: a training run's output directory. Stale temporaries of a killed run
 * are removed on start and resume, every output path is checked before step 1, checkpoints
 * and files are written atomically, and a full disk ends the run with one PeftError line while
 * the last good checkpoint stays intact.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PeftError } from "../../src/errors.ts";
import { loadModel } from "../../src/api/model.ts";
import { prepareOutputDir, writeDirAtomic } from "../../src/train/output_dir.ts";
import { train } from "../../src/train/trainer.ts";
import { SHARED, STORIES, testGpu } from "../helpers.ts";

const root = new URL("../../", import.meta.url).pathname;
const DATA = `${SHARED}data/tinyshakespeare.txt`;

function isRefusal(code: string, ...mentions: string[]) {
  return (e: unknown) => {
    assert.ok(e instanceof PeftError, `expected a PeftError, got ${e}`);
    assert.equal(e.code, code, e.message);
    for (const m of mentions) assert.ok(e.message.includes(m), `"${e.message}" should name ${m}`);
    return true;
  };
}

Deno.test("output dir: stale temporaries of a killed run are removed, everything else is kept", async () => {
  const out = await mkdtemp(join(tmpdir(), "outdir-"));
  try {
    for (const d of ["checkpoint-3", "checkpoint-4.tmp-mx1abc", "checkpoint-12.tmp-zz9"]) await mkdir(join(out, d));
    await writeFile(join(out, "checkpoint-4.tmp-mx1abc", "adapter_model.safetensors"), "half");
    for (const f of ["loss.svg.mx29k5n90oapb.tmp", "metrics.jsonl", "notes.txt", "loss.svg"]) await writeFile(join(out, f), "x");
    const removed = await prepareOutputDir(out);
    assert.deepEqual(removed.sort(), ["checkpoint-12.tmp-zz9", "checkpoint-4.tmp-mx1abc", "loss.svg.mx29k5n90oapb.tmp"]);
    assert.deepEqual((await readdir(out)).sort(), ["checkpoint-3", "loss.svg", "metrics.jsonl", "notes.txt"]);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

Deno.test("output dir: every output path is checked before any work", async () => {
  const out = await mkdtemp(join(tmpdir(), "outdir-"));
  try {
    await writeFile(join(out, "adapter"), "a file where the adapter directory goes");
    await assert.rejects(prepareOutputDir(out), isRefusal("OUTPUT_DIR_NOT_WRITABLE", join(out, "adapter"), "not a directory"));
    await rm(join(out, "adapter"));
    await mkdir(join(out, "metrics.jsonl"));
    await assert.rejects(prepareOutputDir(out), isRefusal("OUTPUT_DIR_NOT_WRITABLE", join(out, "metrics.jsonl"), "not a file"));
    const file = join(out, "plain-file");
    await writeFile(file, "x");
    await assert.rejects(prepareOutputDir(join(file, "run")), isRefusal("OUTPUT_DIR_NOT_WRITABLE", join(file, "run"), "not writable"));

    // train() refuses before step 1: no step runs, nothing is written.
    await rm(join(out, "metrics.jsonl"), { recursive: true });
    await writeFile(join(out, "adapter"), "x");
    const model = await loadModel(STORIES, { gpu: await testGpu() });
    try {
      model.addAdapter("a", { r: 2, target_modules: ["q_proj"] });
      let steps = 0;
      await assert.rejects(
        train(model, { adapter: "a", data: DATA, outputDir: out, seqLen: 16, batchSize: 1, maxSteps: 2, progress: false, onStep: () => steps++ }),
        isRefusal("OUTPUT_DIR_NOT_WRITABLE", join(out, "adapter")),
      );
      assert.equal(steps, 0);
      assert.deepEqual((await readdir(out)).sort(), ["adapter", "plain-file"]);
    } finally {
      model.close();
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

Deno.test("output dir: a failed directory write leaves no temporary and keeps the last good one", async () => {
  const out = await mkdtemp(join(tmpdir(), "outdir-"));
  try {
    const dir = join(out, "checkpoint-1");
    await writeDirAtomic(dir, (tmp) => writeFile(join(tmp, "state.json"), "good"));
    await assert.rejects(
      writeDirAtomic(dir, async (tmp) => {
        await writeFile(join(tmp, "state.json"), "half");
        throw Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
      }),
      isRefusal("WRITE_FAILED", dir, "No space left"),
    );
    assert.deepEqual(await readdir(out), ["checkpoint-1"]);
    assert.equal(await readFile(join(dir, "state.json"), "utf8"), "good");
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

Deno.test("output dir: resuming removes a killed run's temporary checkpoint and continues", async () => {
  const out = await mkdtemp(join(tmpdir(), "outdir-"));
  const model = await loadModel(STORIES, { gpu: await testGpu() });
  try {
    model.addAdapter("a", { r: 2, target_modules: ["q_proj"] }, 1);
    const o = { adapter: "a", data: DATA, outputDir: out, seqLen: 16, batchSize: 2, maxExamples: 64, progress: false, saveSteps: 1 };
    await train(model, { ...o, maxSteps: 1 });
    await mkdir(join(out, "checkpoint-2.tmp-killed"));
    await writeFile(join(out, "checkpoint-2.tmp-killed", "adapter_model.safetensors"), "half a file");
    const r = await train(model, { ...o, maxSteps: 2, resume: true });
    assert.equal(r.steps, 2);
    const names = await readdir(out);
    assert.ok(!names.some((n) => n.includes(".tmp")), names.join(", "));
    assert.ok(names.includes("checkpoint-1") && names.includes("checkpoint-2"), names.join(", "));
  } finally {
    model.close();
    await rm(out, { recursive: true, force: true });
  }
});

/** `unshare -rm` (a user and mount namespace) can mount a small tmpfs without privileges where the kernel allows it. */
const canMountTmpfs = spawnSync("unshare", ["-rm", "sh", "-c", "mount -t tmpfs -o size=64k none /tmp"], { encoding: "utf8" }).status === 0;

Deno.test({
  name: "output dir: a full disk ends training with one PeftError line; checkpoints and loss.svg stay whole",
  ignore: !canMountTmpfs,
  fn: async () => {
    const work = await mkdtemp(join(tmpdir(), "enospc-"));
    try {
      const mnt = join(work, "disk");
      await mkdir(mnt);
      const data = join(work, "data.txt");
      await writeFile(data, (await readFile(DATA, "utf8")).slice(0, 20_000));
      const out = join(mnt, "out");
      // 300 KiB holds two checkpoints of this adapter (~124 KiB each) but not a third.
      const deno = Deno.execPath();
      const cli = `${deno} run -A --no-check ${join(root, "src/cli/bin.ts")} train --model ${STORIES} --data ${data} --out ${out} ` +
        "--seq-len 32 --batch-size 2 --max-steps 6 --save-steps 1 --eval-fraction 0";
      const r = spawnSync("unshare", ["-rm", "sh", "-c", `mount -t tmpfs -o size=300k none ${mnt} && ${cli}; code=$?; ls -la ${out}; ls ${out}/checkpoint-1 ${out}/checkpoint-2; exit $code`], {
        cwd: root,
        encoding: "utf8",
        timeout: 120_000,
      });
      assert.equal(r.status, 1, `${r.stdout}\n${r.stderr}`);
      const errors = r.stderr.trim().split("\n").filter((l) => l.startsWith("error"));
      assert.equal(errors.length, 1, r.stderr);
      assert.match(errors[0], /^error \[WRITE_FAILED\]: cannot write .*checkpoint-3.* No space left on device/);
      assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
      // The listing was taken inside the namespace (the tmpfs is gone now): no temporaries,
      // both earlier checkpoints complete, loss.svg not empty.
      assert.doesNotMatch(r.stdout, /\.tmp/);
      assert.match(r.stdout, /checkpoint-1:\nadapter_config\.json\nadapter_model\.safetensors\noptimizer\.safetensors\ntrainer_state\.json/);
      assert.match(r.stdout, /checkpoint-2:\nadapter_config\.json\nadapter_model\.safetensors\noptimizer\.safetensors\ntrainer_state\.json/);
      const svg = /(\d+) \w+ \d+ \d+:\d+ loss\.svg/.exec(r.stdout);
      assert.ok(svg && Number(svg[1]) > 100, `loss.svg written whole: ${r.stdout}`);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  },
});

