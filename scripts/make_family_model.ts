/**
 * Writes a tiny random-weight model of a family as a GGUF (llama.cpp's names and metadata) and as
 * a Hugging Face directory, with the stories260K tokenizer: something to try the families with
 * when no real Qwen/Phi/Mistral file is at hand (README "Model families").
 *
 *   deno run -A scripts/make_family_model.ts qwen2|llama|llama3|mistral|phi3 <out>
 *     -> <out>.gguf and <out>-hf/
 */
import { dirname } from "node:path";
import { writeFamilyGguf, writeFamilyHf, type FamilySpec } from "../bench/lib/random_family.ts";

const [name, out] = Deno.args;
const specs = JSON.parse(await Deno.readTextFile(new URL("../tests/fixtures/families/specs.json", import.meta.url))).models as FamilySpec[];
const spec = specs.find((s) => s.name === name);
if (!spec || !out) {
  console.error(`usage: deno run -A scripts/make_family_model.ts ${specs.map((s) => s.name).join("|")} <out>`);
  Deno.exit(2);
}
// Untied, and the window wider than a README run, so the tiny model's text is not one repeated token.
const s = { ...spec, tied: false, slidingWindow: spec.slidingWindow ? 4096 : 0 };
await Deno.mkdir(dirname(out), { recursive: true });
await writeFamilyGguf(s, `${out}.gguf`);
await writeFamilyHf(s, `${out}-hf`);
console.log(`wrote ${out}.gguf and ${out}-hf/ (${spec.family}, dim ${spec.dim}, ${spec.nLayers} layers, random weights)`);
