/**
 * The browser twin of src/util/host.ts (swapped in by scripts/bundle.mjs): the same exports, file
 * functions that refuse with one clear error naming the path, path functions that agree with
 * node:path's POSIX ones. And the browser bundle itself: no node: import left (the build checks
 * esbuild's metafile and fails otherwise).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { posix } from "node:path";
import { fileURLToPath } from "node:url";
import { PeftError } from "../../src/errors.ts";
import * as host from "../../src/util/host.ts";
import * as browser from "../../src/util/host.browser.ts";

Deno.test("host twin: the browser host exports what host.ts exports", () => {
  assert.deepEqual(Object.keys(browser).sort(), Object.keys(host).sort());
});

Deno.test("host twin: every file function refuses with NO_FILE_SYSTEM naming the path", async () => {
  for (const name of ["appendFile", "mkdir", "open", "readdir", "readFile", "rename", "rm", "stat", "writeFile"] as const) {
    await assert.rejects((browser[name] as (p: string) => Promise<unknown>)("/models/x.gguf"), (e: unknown) => {
      assert.ok(e instanceof PeftError && e.code === "NO_FILE_SYSTEM", `${name}: ${e}`);
      assert.match(e.message, /^\/models\/x\.gguf: a web page has no file system .* a File or a Blob instead$/);
      return true;
    });
  }
  assert.equal(browser.platform, "browser");
  assert.deepEqual(browser.env, {});
});

Deno.test("host twin: path functions agree with node:path (POSIX)", () => {
  const joins = [["a", "b"], ["/a", "b", "../c"], ["a", "..", ".."], ["/a", "../.."], ["out", "checkpoint-3/"], ["", "x"], ["a//b", "./c"], ["/"]];
  for (const parts of joins) assert.equal(browser.join(...parts), posix.join(...parts), `join(${JSON.stringify(parts)})`);
  const paths = ["/a/b/c.gguf", "a/b/", "c.tar.gz", ".hidden", "/", "x", "dir/.env", "a/b.", "..", "/a//b//"];
  for (const p of paths) {
    assert.equal(browser.basename(p), posix.basename(p), `basename(${p})`);
    assert.equal(browser.dirname(p), posix.dirname(p), `dirname(${p})`);
    assert.equal(browser.extname(p), posix.extname(p), `extname(${p})`);
  }
  assert.equal(browser.basename("a/model.gguf", ".gguf"), posix.basename("a/model.gguf", ".gguf"));
});

Deno.test("browser bundle: builds with no node:, bun: or native-binding import", () => {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  const out = execFileSync("node", ["scripts/bundle.mjs", "--browser"], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  assert.equal(out, "");
  const js = Deno.readTextFileSync(`${root}dist/edge-peft.browser.js`);
  assert.doesNotMatch(js, /from\s*["'](node:|bun:)/);
  assert.doesNotMatch(js, /require\(["']node:/);
  assert.match(js, /NO_FILE_SYSTEM/, "the browser host twin is in the bundle");
  assert.match(js, /export \{[\s\S]*loadModel[\s\S]*\}/);
});
