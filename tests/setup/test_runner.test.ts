/**
 * scripts/test.mjs (the suite's runner) forgives exactly one thing: Deno dying of a signal after
 * its summary said every test passed. Stand-in "deno" scripts print a summary and then abort or
 * exit; the runner's exit code must be 0 only for the forgiven case.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));

async function runWith(script: string): Promise<{ status: number | null; stderr: string }> {
  const dir = await mkdtemp(join(tmpdir(), "test-runner-"));
  try {
    const fake = join(dir, "deno");
    await writeFile(fake, `#!/bin/bash\n${script}\n`);
    await chmod(fake, 0o755);
    const r = spawnSync("node", ["scripts/test.mjs", "tests/none"], { cwd: root, encoding: "utf8", env: { ...process.env, EDGE_PEFT_DENO: fake } });
    return { status: r.status, stderr: r.stderr };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const summary = (s: string) => `printf '\\033[0m\\033[32mok\\033[0m | ${s} \\033[0m(1s)\\n'`;

Deno.test("test runner: a signal after an all-passed summary is forgiven and said; failures, early crashes and exit codes are not", async () => {
  const forgiven = await runWith(`${summary("3 passed | 0 failed")}\nkill -ABRT $$`);
  assert.equal(forgiven.status, 0);
  assert.match(forgiven.stderr, /every test passed; Deno then died of SIGABRT/);

  assert.equal((await runWith(`printf 'FAILED | 2 passed | 1 failed\\n'\nkill -ABRT $$`)).status, 1, "a failed test stays a failure");
  assert.equal((await runWith(`printf 'running 3 tests\\n'\nkill -ABRT $$`)).status, 1, "a crash before the summary stays a failure");
  assert.equal((await runWith(`${summary("3 passed | 0 failed")}\nexit 3`)).status, 3, "a plain exit code passes through");
  assert.equal((await runWith(`${summary("3 passed | 0 failed")}\nexit 0`)).status, 0);
});
