// Run under Node and Bun by dawn_shaders.test.ts (bundled with esbuild), on Dawn:
//  1. every WGSL module compiles (Tint is stricter than Deno's naga: constant NaN, f32 literals
//     beyond the max);
//  2. every entry point of every module builds its pipeline with our bind group layouts under
//     the limits our device got (Bun's device once got WebGPU's defaults, 8 storage buffers per
//     stage, and attention's backward was rejected while training went on reading zeros);
//  3. a pipeline Dawn rejects surfaces as a thrown PeftError naming the kernel, not a log line.
import { SHADERS } from "../../src/generated/shaders.ts";
import { Gpu } from "../../src/gpu/gpu.ts";
import { PeftError } from "../../src/errors.ts";
import process from "node:process";

const gpu = await Gpu.create();
let bad = 0, pipelines = 0;
for (const [name, code] of Object.entries(SHADERS)) {
  // bun-webgpu has no getCompilationInfo: there a bad module shows up as a rejected pipeline below.
  const m = gpu.device.createShaderModule({ code });
  const info = await Promise.resolve().then(() => m.getCompilationInfo()).catch(() => ({ messages: [] as GPUCompilationMessage[] }));
  const errs = info.messages.filter((x: GPUCompilationMessage) => x.type === "error");
  if (errs.length) {
    bad++;
    console.log(name, errs.map((e: GPUCompilationMessage) => e.message).join("; "));
    continue;
  }
  for (const [, entry] of code.replace(/\/\/[^\n]*/g, "").matchAll(/@compute[^{]*?fn\s+([A-Za-z_][A-Za-z0-9_]*)/g)) {
    try {
      gpu.prepare(name, entry);
      await gpu.sync();
      pipelines++;
    } catch (e) {
      bad++;
      console.log(`${name}.${entry}: ${(e as Error).message}`);
      break;
    }
  }
}
console.log(`${Object.keys(SHADERS).length} shaders, ${pipelines} pipelines, ${bad} with errors`);
gpu.destroy();

// A rejected pipeline must throw, naming the kernel, on this runtime too.
const g2 = await Gpu.create();
let surfaced = "";
try {
  g2.prepare("fill", "no_such_entry_point");
  await g2.sync();
} catch (e) {
  if (e instanceof PeftError && /fill\.no_such_entry_point/.test(e.message)) surfaced = e.code;
  else console.log(`unexpected error: ${e}`);
}
console.log(`rejected pipeline: ${surfaced || "NOT SURFACED"}`);
process.exit(bad || !surfaced ? 1 : 0);
