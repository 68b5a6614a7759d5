// Compiles every WGSL module with Dawn (run under Node by dawn_shaders.test.ts): Tint is stricter
// than Deno's naga (e.g. constant NaN, f32 literals beyond the max), so both must accept each shader.
import { SHADERS } from "../../src/generated/shaders.ts";
import { requestDevice } from "../../src/gpu/device.ts";
import process from "node:process";
const { device } = await requestDevice();
let bad = 0;
for (const [name, code] of Object.entries(SHADERS)) {
  const m = device.createShaderModule({ code });
  const info = await m.getCompilationInfo();
  const errs = info.messages.filter((x: GPUCompilationMessage) => x.type === "error");
  if (errs.length) { bad++; console.log(name, errs.map((e: GPUCompilationMessage) => e.message).join("; ")); }
}
console.log(`${Object.keys(SHADERS).length} shaders, ${bad} with errors`);
process.exit(bad ? 1 : 0);
