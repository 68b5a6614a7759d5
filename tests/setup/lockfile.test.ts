/**
 * A fresh clone's `npm install` must leave `git status` clean: package-lock.json must already hold
 * what npm writes (every platform's optional packages of deno, bun, esbuild, ...). npm resolves
 * the lock again in a scratch copy (--package-lock-only: no node_modules, no scripts) and the
 * file must come back byte for byte.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));

Deno.test("npm install leaves package-lock.json as committed", async () => {
  const dir = await mkdtemp(join(tmpdir(), "lockfile-"));
  try {
    for (const f of ["package.json", "package-lock.json"]) await copyFile(join(root, f), join(dir, f));
    const r = spawnSync("npm", ["install", "--package-lock-only", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund"], {
      cwd: dir,
      encoding: "utf8",
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const [before, after] = [await readFile(join(root, "package-lock.json"), "utf8"), await readFile(join(dir, "package-lock.json"), "utf8")];
    assert.ok(before === after, "npm rewrites package-lock.json: commit the lock npm writes (npm install --package-lock-only)");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
