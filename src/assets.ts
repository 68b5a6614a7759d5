/**
 * WGSL sources and WASM bytes, inlined into generated modules by `scripts/prepare.mjs`
 * (run by every deno task that needs them), so nothing is read from disk at import time and
 * the esbuild bundle carries them inside.
 */
import { SHADERS } from "./generated/shaders.ts";
import { WASM_BASE64 } from "./generated/wasm.ts";
import { PeftError } from "./errors.ts";

export function shaderSource(name: string): string {
  const s = SHADERS[name];
  if (s === undefined) {
    throw new PeftError("ASSET_MISSING", `no shader named ${name} (known: ${Object.keys(SHADERS).join(", ")}); run \`deno task setup\``);
  }
  return s;
}

const wasmCache = new Map<string, Uint8Array>();
export function wasmBytes(name: string): Uint8Array {
  let bytes = wasmCache.get(name);
  if (!bytes) {
    const b64 = WASM_BASE64[name];
    if (b64 === undefined) {
      throw new PeftError("ASSET_MISSING", `no WASM module named ${name} (known: ${Object.keys(WASM_BASE64).join(", ")}); run \`deno task setup\``);
    }
    const bin = atob(b64);
    bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    wasmCache.set(name, bytes);
  }
  return bytes;
}
