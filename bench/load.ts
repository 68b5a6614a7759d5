/**
 * Model load time and peak memory with and without the load-time validation of issue #17
 * (config ranges, layer count and every tensor shape against the config, unused tensors:
 * src/model/validate_weights.ts), in the same run, on stories260K and the ~25M random llama
 * (bench/lib/random_llama.ts), the latter also as an HF directory. The peer is the same load
 * with validation off. The end-to-end difference is within this machine's noise (two shared
 * cores), so the validation step is also timed alone, in-process, on and off. The
 * GGUF structure checks (offsets, counts) are part of parsing and stay on in both; so does the
 * non-finite scan of LlamaGpu.load, which predates the issue.
 *
 * Each load runs in a fresh process (so its peak resident memory is its own), alternating
 * on/off, median of REPS.
 *
 *   node scripts/prepare.mjs && deno run -A bench/load.ts [--quick]
 */
import { readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { Gpu } from "../src/gpu/gpu.ts";
import { readGGUF } from "../src/io/gguf.ts";
import { loadModel } from "../src/api/model.ts";
import { setWeightValidation } from "../src/model/validate_weights.ts";
import { configFromGGUF, ggufWeights } from "../src/model/weights.ts";
import { hfWeights, writeHfDirectory } from "../src/model/hf_weights.ts";
import { LLAMA_25M, median, randomLlamaGGUF, STORIES260K } from "./lib/random_llama.ts";

async function peakRss(): Promise<number> {
  const m = /VmHWM:\s+(\d+) kB/.exec(await readFile("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}

if (Deno.args[0] === "--child") {
  // One load: [--child, path, on|off] -> {ms, peak, before} on stdout.
  const [, path, mode] = Deno.args;
  setWeightValidation(mode === "on");
  const gpu = await Gpu.create();
  const before = Deno.memoryUsage().rss;
  const t0 = performance.now();
  const model = await loadModel(path, { gpu });
  const ms = performance.now() - t0;
  const peak = await peakRss();
  model.close();
  console.log(JSON.stringify({ ms, peak, before }));
  Deno.exit(0);
}

const quick = Deno.args.includes("--quick");
const REPS = quick ? 3 : 9;
/** The 25M llama also as an HF directory (config.json + model.safetensors), written once to the temp dir. */
async function hfCopy(gguf: string): Promise<string> {
  const dir = join(tmpdir(), `${basename(gguf, ".gguf")}-hf`);
  const done = await stat(join(dir, "config.json")).then(() => true, () => false);
  if (!done) {
    const src = await ggufWeights(gguf);
    await writeHfDirectory(dir, src);
    await src.close();
    const g = await readGGUF(STORIES260K);
    const tokens = g.get<string[]>("tokenizer.ggml.tokens")!;
    await g.close();
    // A byte-fallback BPE tokenizer.json over the padded vocab (its merges do not matter here).
    const vocab = Object.fromEntries(Array.from({ length: LLAMA_25M.vocab }, (_, i) => [i < tokens.length ? tokens[i] : `<r_${i}>`, i]));
    await writeFile(join(dir, "tokenizer.json"), JSON.stringify({
      model: { type: "BPE", vocab, merges: [], byte_fallback: true, unk_token: "<unk>" },
      normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "\u2581" }, { type: "Replace", pattern: { String: " " }, content: "\u2581" }] },
      decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "\u2581" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }] },
    }));
  }
  return dir;
}

const gguf25 = await randomLlamaGGUF(LLAMA_25M);
const cases = [
  { name: "stories260K (GGUF)", path: STORIES260K, gguf: true },
  { name: "random llama 25M (GGUF; d512 L8 ffn1376 V32000)", path: gguf25, gguf: true },
  { name: "random llama 25M (HF safetensors directory)", path: await hfCopy(gguf25), gguf: false },
];

async function child(path: string, mode: "on" | "off"): Promise<{ ms: number; peak: number; before: number }> {
  const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", new URL(import.meta.url).pathname, "--child", path, mode], stderr: "inherit" }).output();
  if (!out.success) throw new Error(`child load of ${path} (${mode}) failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
}

/**
 * µs per opening of the model's description, validation on and off, in this process: GGUF:
 * configFromGGUF on the parsed file; HF: hfWeights (reads config.json and the shard headers).
 */
async function validationMicros(path: string, gguf: boolean): Promise<{ on: number; off: number }> {
  const g = gguf ? await readGGUF(path) : undefined;
  const open = async () => {
    if (g) configFromGGUF(g);
    else await (await hfWeights(path)).close();
  };
  const time = async (on: boolean) => {
    setWeightValidation(on);
    const n = g ? 200 : 20;
    for (let i = 0; i < 5; i++) await open();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await open();
    return ((performance.now() - t0) / n) * 1000;
  };
  const r = { on: await time(true), off: await time(false) };
  setWeightValidation(true);
  await g?.close();
  return r;
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);
console.log(`load time and peak memory, validation on vs off (each load a fresh process; median of ${REPS}):\n`);
console.log("| model | load ms (validation on) | load ms (off) | added | peak RSS MiB (on) | peak RSS MiB (off) | opening the description alone (µs, on / off) |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const c of cases) {
  const on: { ms: number; peak: number }[] = [], off: { ms: number; peak: number }[] = [];
  await child(c.path, "on"); // warm the file cache and Deno's module cache
  for (let i = 0; i < REPS; i++) {
    on.push(await child(c.path, "on"));
    off.push(await child(c.path, "off"));
  }
  const tOn = median(on.map((r) => r.ms)), tOff = median(off.map((r) => r.ms));
  const pOn = median(on.map((r) => r.peak)), pOff = median(off.map((r) => r.peak));
  const step = await validationMicros(c.path, c.gguf);
  console.log(
    `| ${c.name} | ${tOn.toFixed(1)} | ${tOff.toFixed(1)} | ${(((tOn - tOff) / tOff) * 100).toFixed(1)}% | ${mib(pOn)} | ${mib(pOff)} | ` +
      `${step.on.toFixed(0)} / ${step.off.toFixed(0)} (${(((step.on - step.off) / 1000 / tOff) * 100).toFixed(2)}% of the load) |`,
  );
}
console.log("\nTarget (issue #17): validation adds at most 5% to load time.");
