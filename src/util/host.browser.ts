/**
 * host.ts for a web page (the browser build swaps it in): no file system, so every file function
 * refuses with one clear PeftError naming the path; paths are POSIX strings (they only appear in
 * messages here); no environment, no terminal, no Ctrl-C. Exports exactly what host.ts exports
 * (tests/runtimes/host_browser.test.ts checks the names and the path functions against node:path).
 */
import { PeftError } from "../errors.ts";

function noFileSystem(path: unknown, ..._rest: unknown[]): Promise<never> {
  return Promise.reject(
    new PeftError(
      "NO_FILE_SYSTEM",
      `${String(path)}: a web page has no file system to read or write paths; pass the file's bytes (Uint8Array or ArrayBuffer), a File or a Blob instead`,
    ),
  );
}

export const appendFile = noFileSystem;
export const mkdir = noFileSystem;
export const open = noFileSystem;
export const readdir = noFileSystem;
export const readFile = noFileSystem;
export const rename = noFileSystem;
export const rm = noFileSystem;
export const stat = noFileSystem;
export const writeFile = noFileSystem;

/** node:path's posix join: segments joined by "/", repeated slashes, "." and resolvable ".." removed. */
export function join(...parts: string[]): string {
  const joined = parts.filter((p) => p !== "").join("/");
  if (joined === "") return ".";
  const absolute = joined.startsWith("/");
  const out: string[] = [];
  for (const seg of joined.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === ".." && out.length && out[out.length - 1] !== "..") out.pop();
    else if (seg !== ".." || !absolute) out.push(seg);
  }
  const body = out.join("/");
  const trailing = joined.endsWith("/") && body !== "" ? "/" : "";
  return (absolute ? "/" : "") + (body === "" && !absolute ? "." : body) + trailing;
}

function trimSlashes(path: string): string {
  let end = path.length;
  while (end > 1 && path[end - 1] === "/") end--;
  return path.slice(0, end);
}

export function basename(path: string, ext?: string): string {
  const p = trimSlashes(path);
  const base = p === "/" ? "" : p.slice(p.lastIndexOf("/") + 1);
  return ext && base !== ext && base.endsWith(ext) ? base.slice(0, -ext.length) : base;
}

export function dirname(path: string): string {
  const p = trimSlashes(path);
  const i = p.lastIndexOf("/");
  if (i < 0) return ".";
  return i === 0 ? "/" : p.slice(0, i);
}

export function extname(path: string): string {
  const base = basename(path);
  const i = base.lastIndexOf(".");
  return i <= 0 || (i === 1 && base === "..") ? "" : base.slice(i);
}

export function tmpdir(): string {
  return "/tmp";
}

export const env: Record<string, string | undefined> = {};

export const platform: string = "browser";

/** Progress lines go to the console (a page shows its own progress). */
export const stdout = {
  isTTY: false,
  write(s: string): void {
    const line = s.replace(/\n$/, "");
    if (line) console.log(line);
  },
};

export function onInterrupt(_fn: () => void): () => void {
  return () => {};
}
