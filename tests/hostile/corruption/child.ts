/**
 * One child process of the corruption suite: `child.ts <kind> <ids.json>` builds each listed
 * variant into a temporary directory, loads it the way a user would (loadModel for GGUF and HF
 * directories, Tokenizer.fromFile for tokenizer.json, Model.loadAdapter for adapters), and
 * prints one JSON line per variant: refused (with the error), loaded (with whether its outputs
 * equal the unmodified file's), or failed with an exception that is not a PeftError. The parent
 * runs it under time and memory caps and treats a child that dies as crashed variants.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { PeftError } from "../../../src/errors.ts";
import { Gpu } from "../../../src/gpu/gpu.ts";
import { loadModel, type Model } from "../../../src/api/model.ts";
import { Tokenizer } from "../../../src/tokenizer/mod.ts";
import { STORIES } from "../../helpers.ts";
import { adapterBaseFiles, type Files, hfBaseFiles, type Kind, variants } from "./variants.ts";

const [kind, idsFile] = Deno.args as [Kind, string];
const ids: string[] = JSON.parse(await Deno.readTextFile(idsFile));
const all = new Map(variants(kind).map((v) => [v.id, v]));

const IDS = [1, 403, 407, 261, 378, 432, 383];
const PROBES = [
  "Once upon a time, there was a little girl named Lily.",
  "héllo wörld ☃ 😀 naïve façade",
  "  spaces\tand\nnewlines  ",
  "<s> special </s> text <unk>",
  "1234567890 !?@#$%^&*()",
];

const root = await mkdtemp(join(tmpdir(), `corrupt-${kind}-`));
let n = 0;

async function writeFiles(files: Files): Promise<string> {
  const dir = join(root, String(n++));
  for (const [rel, bytes] of Object.entries(files)) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeFile(join(dir, rel), bytes);
  }
  await mkdir(dir, { recursive: true });
  return dir;
}

/** What must not change: the logits of a fixed id sequence and the tokenization of the probes. */
async function modelOutputs(m: Model): Promise<string> {
  const logits = await m.logits(IDS);
  const toks = PROBES.map((p) => m.tokenizer.encode(p, { addSpecial: true, parseSpecial: true }));
  return JSON.stringify([logits.map((l) => Array.from(l)), toks]);
}

function tokenizerOutputs(t: Tokenizer): string {
  return JSON.stringify(PROBES.map((p) => {
    const ids = t.encode(p, { addSpecial: true, parseSpecial: true });
    return [ids, t.encode(p, { addSpecial: false, parseSpecial: false }), t.decode(ids)];
  }));
}

const gpu = kind === "tokenizer" ? undefined : await Gpu.create();
let base: Model | undefined;
const baseline = new Map<string, string>();

/** Loads a variant's directory and returns a fingerprint of its outputs (a key for the baseline). */
async function load(dir: string, files: Files): Promise<{ key: string; out: string; path: string }> {
  switch (kind) {
    case "gguf": {
      const path = join(dir, "model.gguf");
      const m = await loadModel(path, { gpu });
      try {
        return { key: "gguf", out: await modelOutputs(m), path };
      } finally {
        m.close();
      }
    }
    case "hf": {
      const m = await loadModel(dir, { gpu });
      try {
        return { key: "hf", out: await modelOutputs(m), path: dir };
      } finally {
        m.close();
      }
    }
    case "tokenizer": {
      const rel = Object.keys(files)[0];
      const path = join(dir, rel);
      return { key: rel.split("/")[0], out: tokenizerOutputs(await Tokenizer.fromFile(path)), path };
    }
    case "adapter": {
      base ??= await loadModel(STORIES, { gpu });
      const name = `v${n}`;
      await base.loadAdapter(name, dir);
      try {
        return { key: "adapter", out: JSON.stringify((await base.logits(IDS, { adapter: name })).map((l) => Array.from(l))), path: dir };
      } finally {
        base.deleteAdapter(name);
      }
    }
  }
}

// Baselines: the unmodified files, loaded the same way.
const baseFiles: [string, Files][] = kind === "gguf"
  ? [["gguf", await all.get("gguf/reencode/identity")!.build()]]
  : kind === "hf"
  ? [["hf", await hfBaseFiles()]]
  : kind === "adapter"
  ? [["adapter", await adapterBaseFiles()]]
  : [["spm", await all.get("tokenizer/spm/identity")!.build()], ["bpe", await all.get("tokenizer/bpe/identity")!.build()]];
for (const [key, files] of baseFiles) {
  const r = await load(await writeFiles(files), files);
  baseline.set(key, r.out);
}

for (const id of ids) {
  const v = all.get(id);
  if (!v) throw new Error(`unknown variant ${id}`);
  const files = await v.build();
  const dir = await writeFiles(files);
  const path = kind === "gguf" ? join(dir, "model.gguf") : kind === "tokenizer" ? join(dir, Object.keys(files)[0] ?? "") : dir;
  let line: Record<string, unknown>;
  try {
    const r = await load(dir, files);
    line = { id, outcome: "loaded", same: r.out === baseline.get(r.key), path };
  } catch (e) {
    line = e instanceof PeftError
      ? { id, outcome: "refused", code: e.code, message: e.message, path }
      : { id, outcome: "error", name: (e as Error)?.name, message: String((e as Error)?.message ?? e).slice(0, 500), path };
  }
  console.log(JSON.stringify(line));
  await rm(dir, { recursive: true, force: true });
}
base?.close();
await rm(root, { recursive: true, force: true });
