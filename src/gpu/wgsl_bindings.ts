/**
 * Reads the `@group(0) @binding(N) var<...> name` declarations of a WGSL module so the GPU core
 * can build an explicit bind group layout (shared by every entry point of the module) and bind
 * buffers by name.
 */
import { PeftError } from "../errors.ts";

export interface WgslBinding {
  binding: number;
  name: string;
  kind: GPUBufferBindingType; // "uniform" | "storage" | "read-only-storage"
}

const DECL = /@group\(\s*0\s*\)\s*@binding\(\s*(\d+)\s*\)\s*var\s*<\s*(uniform|storage)\s*(?:,\s*(read|read_write)\s*)?>\s*([A-Za-z_][A-Za-z0-9_]*)/g;

export function parseBindings(code: string, shaderName: string): WgslBinding[] {
  const stripped = code.replace(/\/\/[^\n]*/g, "");
  const out: WgslBinding[] = [];
  for (const m of stripped.matchAll(DECL)) {
    const kind: GPUBufferBindingType = m[2] === "uniform" ? "uniform" : m[3] === "read_write" ? "storage" : "read-only-storage";
    out.push({ binding: Number(m[1]), name: m[4], kind });
  }
  if (out.filter((b) => b.kind === "uniform").length > 1) {
    throw new PeftError("SHADER_LAYOUT", `shader ${shaderName}: at most one uniform binding is supported`);
  }
  const seen = new Set<number>();
  for (const b of out) {
    if (seen.has(b.binding)) throw new PeftError("SHADER_LAYOUT", `shader ${shaderName}: binding ${b.binding} declared twice`);
    seen.add(b.binding);
  }
  return out.sort((a, b) => a.binding - b.binding);
}
