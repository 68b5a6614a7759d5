/**
 * The per-family test models (tests/fixtures/families/specs.json): each written once per test
 * process as a GGUF and an HF directory by bench/lib/random_family.ts, with the PyTorch logits
 * that scripts/dev/make_family_fixtures.py computed from the same weights.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type FamilySpec, writeFamilyGguf, writeFamilyHf } from "../../bench/lib/random_family.ts";

const FIXTURES = new URL("../fixtures/families/", import.meta.url);

export interface FamilyModel {
  spec: FamilySpec;
  gguf: string;
  hf: string;
  prompts: number[][];
  /** PyTorch logits per prompt, [T·vocab]. */
  logits: Float32Array[];
}

const specsFile = JSON.parse(await readFile(new URL("specs.json", FIXTURES), "utf8")) as { models: FamilySpec[]; prompts: number[][] };
export const FAMILY_SPECS: FamilySpec[] = specsFile.models;

let dir: string | null = null;
function tempDir(): string {
  if (!dir) {
    dir = Deno.makeTempDirSync({ prefix: "families-" });
    const d = dir;
    addEventListener("unload", () => Deno.removeSync(d, { recursive: true }));
  }
  return dir;
}

const made = new Map<string, Promise<FamilyModel>>();

/** The model `name` of specs.json (with `over` applied: then no fixture logits), written once. */
export function familyModel(name: string, over: Partial<FamilySpec> = {}): Promise<FamilyModel> {
  const key = `${name}:${JSON.stringify(over)}`;
  let p = made.get(key);
  if (!p) {
    p = (async () => {
      const base = FAMILY_SPECS.find((s) => s.name === name);
      if (!base) throw new Error(`no family spec ${name}`);
      const spec = { ...base, ...over };
      const tag = `${name}-${made.size}`;
      const gguf = join(tempDir(), `${tag}.gguf`), hf = join(tempDir(), `${tag}-hf`);
      await writeFamilyGguf(spec, gguf);
      await writeFamilyHf(spec, hf);
      const logits: Float32Array[] = [];
      if (!Object.keys(over).length) {
        const bin = await readFile(new URL(`${name}.logits.bin`, FIXTURES));
        const all = new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength));
        let o = 0;
        for (const ids of specsFile.prompts) {
          logits.push(all.subarray(o, o + ids.length * spec.vocab));
          o += ids.length * spec.vocab;
        }
      }
      return { spec, gguf, hf, prompts: specsFile.prompts, logits };
    })();
    made.set(key, p);
  }
  return p;
}
