/**
 * The host's files, paths and process, for the modules that read or write files by path.
 * Deno, Bun and Node all provide these node: built-ins. A web page has none: the browser build
 * (scripts/bundle.mjs) swaps this module for host.browser.ts, whose file functions refuse with a
 * PeftError that says to pass bytes, a File or a Blob. No other library module imports a node:
 * built-in, so the page's bundle has no node: import at all.
 */
import process from "node:process";

export { appendFile, mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
export { basename, dirname, extname, join } from "node:path";
export { tmpdir } from "node:os";

/** Environment variables (the same object as process.env, so writes reach child code). */
export const env: Record<string, string | undefined> = process.env;

/** "linux", "darwin", "win32", ... ("browser" in a web page). */
export const platform: string = process.platform;

/** Standard output: whether it is a terminal, and a writer. */
export const stdout = {
  get isTTY(): boolean {
    return Boolean(process.stdout.isTTY);
  },
  write(s: string): void {
    process.stdout.write(s);
  },
};

/** Calls `fn` on Ctrl-C (SIGINT) until the returned function is called. */
export function onInterrupt(fn: () => void): () => void {
  process.on("SIGINT", fn);
  return () => void process.off("SIGINT", fn);
}
