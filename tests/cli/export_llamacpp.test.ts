/**
 * `export` checked by llama.cpp itself (node-llama-cpp's prebuilt CPU binary under Node,
 * tests/cli/llamacpp_greedy.mjs) on stories260K with two non-trivial adapters (random non-zero
 * lora_B, init_lora_weights false, scaled so the text stays fluent but changes):
 *   - a LoRA GGUF applied at runtime by llama.cpp gives our unmerged greedy ids for 64 tokens, for
 *     LoRA on q/k/v/o and rsLoRA on every linear; the same file with q/k lora_b rows in HF order,
 *     or with rsLoRA's alpha written unconverted, does not (so the test sees both conventions);
 *   - the merged model as q8_0 and q4_k GGUF: the tensor types follow llama.cpp's fallback rule,
 *     llama.cpp's greedy ids on the q8_0 file equal ours unmerged for 64 tokens, and on the q4_k
 *     file (mostly Q5_0 here) equal ours on the same file for 64 and ours unmerged for 16+ (the
 *     5-bit weights themselves move the logits).
 * And the HF directory export (merged, from a GGUF and from an HF source with its tokenizer files),
 * and the refusals: DoRA and methods llama.cpp has no runtime format for, bad flag combinations.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, type Model } from "../../src/api/model.ts";
import { main as exportCli } from "../../src/cli/export.ts";
import { PeftError } from "../../src/errors.ts";
import { GGML_TYPE_NAMES, readGGUF } from "../../src/io/gguf.ts";
import { writeLoraGguf } from "../../src/io/gguf_lora.ts";
import { permuteQK } from "../../src/model/config.ts";
import { hfWeights, writeHfDirectory } from "../../src/model/hf_weights.ts";
import { ggufWeights } from "../../src/model/weights.ts";
import { loraGguf } from "../../src/peft/lora/gguf.ts";
import { assertClose, STORIES, testGpu } from "../helpers.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const available = existsSync(join(root, "node_modules/node-llama-cpp")) && Deno.build.os === "linux" && Deno.build.arch === "x86_64";
const N = 64;

/** LoRA on the attention projections; rsLoRA (alpha / √r = 0.25) on every linear. */
const PLAIN = { r: 4, lora_alpha: 1, target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights: false };
const RSLORA = { r: 4, lora_alpha: 0.5, use_rslora: true, target_modules: "all-linear", init_lora_weights: false };

interface Fixture {
  dir: string;
  model: Model;
  prompt: number[];
  ours: { base: number[]; plain: number[]; rs: number[] };
  /** HF PEFT directory of the rsLoRA adapter. */
  rsDir: string;
}

let fixture: Promise<Fixture> | null = null;
function setup(): Promise<Fixture> {
  return fixture ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), "export-llamacpp-"));
    addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    const model = await loadModel(STORIES, { gpu: await testGpu() });
    model.addAdapter("plain", PLAIN, 7);
    model.addAdapter("rs", RSLORA, 11);
    const prompt = model.encodePrompt("Once upon a time");
    const ours = { base: await greedy(model, prompt), plain: await greedy(model, prompt, "plain"), rs: await greedy(model, prompt, "rs") };
    const rsDir = join(dir, "rs-adapter");
    await model.saveAdapter("rs", rsDir);
    return { dir, model, prompt, ours, rsDir };
  })();
}

/** Our greedy ids (stops at EOS, like llama.cpp's CLI; llama.cpp's runner here does not). */
async function greedy(model: Model, prompt: number[], adapter?: string): Promise<number[]> {
  const ids: number[] = [];
  for await (const p of model.generateStream(prompt, { maxTokens: N, temperature: 0, adapter })) ids.push(p.id);
  return ids;
}

function llamaCpp(runs: { model: string; lora?: string }[], prompt: number[]): number[][] {
  const r = spawnSync("node", ["tests/cli/llamacpp_greedy.mjs", JSON.stringify({ runs, prompt, n: N })], { cwd: root, encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, `llama.cpp run failed: ${r.stderr}`);
  return r.stdout.trim().split("\n").map((l) => JSON.parse(l).ids);
}

/** How many leading ids agree. */
function agreement(a: number[], b: number[]): number {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k;
}

/** llama.cpp's ids equal ours for `n` tokens, or up to our EOS (which llama.cpp then generates too). */
function assertSameIds(theirs: number[], ours: number[], n: number, eos: number, what: string) {
  const k = agreement(theirs, ours);
  const done = ours.length < N && k === ours.length && theirs[k] === eos;
  assert.ok(k >= n || done, `${what}: llama.cpp agrees with ours for ${k} tokens, expected ${n}\n ours  ${ours.join(",")}\n llama ${theirs.join(",")}`);
}

async function tensorTypes(path: string): Promise<Map<string, string>> {
  const g = await readGGUF(path);
  await g.close();
  return new Map([...g.tensors.values()].map((t) => [t.name, GGML_TYPE_NAMES[t.ggmlType]]));
}

Deno.test({
  name: "export LoRA GGUF: llama.cpp's runtime LoRA gives our unmerged greedy ids for 64 tokens (LoRA q/k/v/o, rsLoRA all-linear)",
  ignore: !available,
  async fn() {
    const { dir, model, prompt, ours, rsDir } = await setup();
    assert.notDeepEqual(ours.plain, ours.base, "the LoRA adapter changes the greedy text");
    assert.notDeepEqual(ours.rs, ours.base, "the rsLoRA adapter changes the greedy text");
    assert.notDeepEqual(ours.rs, ours.plain);

    const plain = join(dir, "plain.gguf"), rs = join(dir, "rs.gguf");
    await model.saveAdapterGguf("plain", plain);
    await exportCli(["--model", STORIES, "--adapter", rsDir, "--to", rs]); // through the PEFT directory (HF row order) and back

    const g = await readGGUF(rs);
    await g.close();
    assert.equal(g.get("general.architecture"), "llama");
    assert.equal(g.get("general.type"), "adapter");
    assert.equal(g.get("adapter.type"), "lora");
    assert.equal(g.get("adapter.lora.alpha"), 1, "rsLoRA alpha 0.5 with r 4 is written as 0.5·√4");
    assert.equal(g.tensors.size, 5 * 7 * 2, "a lora_a and a lora_b for each of the 7 linears of 5 layers");
    assert.deepEqual(g.tensors.get("blk.0.attn_q.weight.lora_a")!.shape, [4, 64], "lora_a [r, in] (GGUF dims [in, r])");
    assert.deepEqual(g.tensors.get("blk.4.ffn_down.weight.lora_b")!.shape, [64, 4], "lora_b [out, r]");
    assert.deepEqual(g.tensors.get("blk.4.ffn_down.weight.lora_a")!.shape, [4, 172]);

    // Controls: the same adapters with q/k lora_b rows in HF order, or rsLoRA's alpha unconverted.
    const a = model.adapter("plain");
    const hfOrder = await loraGguf(a, "llama");
    for (const p of hfOrder.pairs) if (/attn_[qk]\./.test(p.weight)) p.b = permuteQK(p.b, p.outFeatures, p.r, model.config.headDim, "gguf_to_hf");
    await writeLoraGguf(join(dir, "plain-hf-order.gguf"), hfOrder);
    await writeLoraGguf(join(dir, "rs-raw-alpha.gguf"), { ...await loraGguf(model.adapter("rs"), "llama"), alpha: RSLORA.lora_alpha });

    const [base, lPlain, lRs, qkWrong, alphaWrong] = llamaCpp([
      { model: STORIES },
      { model: STORIES, lora: plain },
      { model: STORIES, lora: rs },
      { model: STORIES, lora: join(dir, "plain-hf-order.gguf") },
      { model: STORIES, lora: join(dir, "rs-raw-alpha.gguf") },
    ], prompt);
    const eos = model.tokenizer.eosId;
    assertSameIds(base, ours.base, N, eos, "base model");
    assertSameIds(lPlain, ours.plain, N, eos, "LoRA q/k/v/o");
    assertSameIds(lRs, ours.rs, N, eos, "rsLoRA all-linear");
    assert.ok(agreement(qkWrong, ours.plain) < N, "q/k lora_b rows in HF order change llama.cpp's text (the order is seen)");
    assert.ok(agreement(alphaWrong, ours.rs) < N, "rsLoRA alpha written unconverted changes llama.cpp's text");
  },
});

Deno.test({
  name: "export --merge --type q8_0 / q4_k: llama.cpp's fallback types, and llama.cpp's greedy ids on the files equal ours",
  ignore: !available,
  async fn() {
    const { dir, model, prompt, ours, rsDir } = await setup();
    const q8 = join(dir, "merged-q8_0.gguf"), q4k = join(dir, "merged-q4_k.gguf"), baseQ8 = join(dir, "base-q8_0.gguf");
    await exportCli(["--model", STORIES, "--to", baseQ8, "--type", "q8_0"]); // no adapter: the base re-written
    await exportCli(["--model", STORIES, "--adapter", rsDir, "--merge", "--to", q8, "--type", "q8_0"]);
    await exportCli(["--model", STORIES, "--adapter", rsDir, "--merge", "--to", q4k, "--type", "q4_k"]);

    // stories260K: dim 64, FFN 172. Matrices with rows of 64: Q8_0 / Q4_K -> Q5_0; ffn_down's rows of 172 are
    // not whole 32-blocks either: F16. Norms stay F32.
    for (const [path, rows64] of [[q8, "Q8_0"], [baseQ8, "Q8_0"], [q4k, "Q5_0"]]) {
      const types = await tensorTypes(path);
      assert.equal(types.size, 3 + 5 * 9, "every tensor of the base (tied head: no output.weight)");
      for (const [name, type] of types) {
        const want = name.endsWith("_norm.weight") ? "F32" : name.endsWith("ffn_down.weight") ? "F16" : rows64;
        assert.equal(type, want, `${path}: ${name}`);
      }
    }

    const onQ4k = await loadModel(q4k, { gpu: model.gpu });
    let oursQ4k: number[];
    try {
      oursQ4k = await greedy(onQ4k, prompt);
    } finally {
      onQ4k.close();
    }
    const [lq8, lq4k, lBase] = llamaCpp([{ model: q8 }, { model: q4k }, { model: baseQ8 }], prompt);
    const eos = model.tokenizer.eosId;
    // llama.cpp rounds activations to 8 bits in quantized matmuls; on this model that leaves the ids unchanged.
    assertSameIds(lq8, ours.rs, N, eos, "merged q8_0 (llama.cpp) vs unmerged rsLoRA (ours, f32)");
    assertSameIds(lq4k, oursQ4k, N, eos, "merged q4_k (llama.cpp) vs the same file (ours)");
    assertSameIds(lq4k, ours.rs, 16, eos, "merged q4_k (llama.cpp) vs unmerged rsLoRA (ours, f32)");
    assertSameIds(lBase, ours.base, N, eos, "base q8_0 (llama.cpp) vs base (ours, f32)");
    assert.notDeepEqual(lq8, lBase, "the merged file holds the adapter");
  },
});

/** A byte-level BPE tokenizer.json (GPT-2's byte alphabet, three merges, one special token): 260 tokens. */
function tinyTokenizerJson(): string {
  const bytes: number[] = [];
  for (let b = 0; b < 256; b++) if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) bytes.push(b);
  const chars = bytes.map((b) => b);
  for (let b = 0, extra = 0; b < 256; b++) if (!bytes.includes(b)) bytes.push(b), chars.push(256 + extra++);
  const vocab: Record<string, number> = {};
  bytes.forEach((b, i) => (vocab[String.fromCodePoint(chars[i])] = b));
  const merges = ["Ġ t", "h e", "Ġt he"];
  merges.forEach((m, i) => (vocab[m.replace(" ", "")] = 256 + i));
  vocab["<|endoftext|>"] = 259;
  return JSON.stringify({
    version: "1.0",
    added_tokens: [{ id: 259, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, fuse_unk: false, byte_fallback: false, vocab, merges },
  });
}

Deno.test("export --merge --to-hf: the merged GGUF's tensors bit for bit; from an HF source, its tokenizer files and the unmerged logits", async () => {
  const { dir, model, rsDir } = await setup();
  const hf = join(dir, "merged-hf"), f32 = join(dir, "merged-f32.gguf");
  await exportCli(["--model", STORIES, "--adapter", rsDir, "--merge", "--to-hf", hf]);
  await exportCli(["--model", STORIES, "--adapter", rsDir, "--merge", "--to", f32]);
  const [h, g] = [await hfWeights(hf), await readGGUF(f32)];
  try {
    assert.deepEqual(h.config, model.config);
    assert.deepEqual(h.names().sort(), [...g.tensors.keys()].sort());
    for (const name of h.names()) assert.deepEqual(await h.readF32(name), await g.readF32(name), name);
    assert.equal(h.tokenizerJsonPath, undefined, "a GGUF source has no tokenizer.json to copy");
  } finally {
    await h.close();
    await g.close();
  }

  // An HF source with tokenizer files: they are copied, and the merged directory runs as base + adapter did.
  const src = join(dir, "hf-source");
  const w = await ggufWeights(STORIES);
  await writeHfDirectory(src, w);
  await w.close();
  await writeFile(join(src, "tokenizer.json"), tinyTokenizerJson());
  await writeFile(join(src, "tokenizer_config.json"), JSON.stringify({ eos_token: "<|endoftext|>", model_max_length: 512 }));
  const ids = [1, 300, 72, 101, 256, 258, 40];
  const source = await loadModel(src, { gpu: model.gpu });
  let expected: Float32Array[];
  try {
    await source.loadAdapter("rs", rsDir);
    expected = await source.logits(ids, { adapter: "rs" });
  } finally {
    source.close();
  }
  const out = join(dir, "hf-merged-from-hf");
  await exportCli(["--model", src, "--adapter", rsDir, "--merge", "--to-hf", out]);
  for (const f of ["tokenizer.json", "tokenizer_config.json", "config.json"]) {
    assert.equal(await readFile(join(out, f), "utf8"), await readFile(join(src, f), "utf8"), f);
  }
  const merged = await loadModel(out, { gpu: model.gpu });
  try {
    const got = await merged.logits(ids);
    got.forEach((row, t) => assertClose(row, expected[t], 0, 1e-5, `merged HF logits, position ${t}`));
  } finally {
    merged.close();
  }
  await assert.rejects(exportCli(["--model", src, "--to", join(dir, "x.gguf")]), (e: PeftError) => e.code === "UNSUPPORTED" && /Hugging Face directory: save it with saveHf/.test(e.message));
});

Deno.test("export refusals: DoRA and methods llama.cpp has no runtime LoRA for, name the way out; bad flag combinations are USAGE errors", async () => {
  const { dir, model, rsDir } = await setup();
  const refuse = async (config: Record<string, unknown>, message: RegExp) => {
    model.addAdapter("x", config, 1);
    try {
      await assert.rejects(model.saveAdapterGguf("x", join(dir, "x.gguf")), (e: PeftError) => e.code === "UNSUPPORTED" && message.test(e.message));
    } finally {
      model.deleteAdapter("x");
    }
  };
  await refuse({ r: 4, use_dora: true }, /adapter x is DoRA: llama\.cpp's LoRA adapters have no magnitude vector.*export --merge/);
  await refuse({ peft_type: "IA3" }, /adapter x is \(IA\)³: llama\.cpp loads LoRA adapters only; export the model with the adapter merged/);
  await refuse({ peft_type: "BITFIT" }, /adapter x is BitFit: .*cannot be merged either \(llama's base linears have no bias/);
  await refuse({ r: 4, lora_alpha: 0 }, /lora_alpha 0 \(no effect\)/);
  assert.equal(existsSync(join(dir, "x.gguf")), false, "nothing written");

  const usage = async (args: string[], message: RegExp) =>
    await assert.rejects(exportCli(["--model", STORIES, ...args]), (e: PeftError) => e.code === "USAGE" && message.test(e.message), args.join(" "));
  await usage(["--adapter", rsDir], /give one output: --to <out\.gguf> or --to-hf <dir>/);
  await usage(["--to", "a.gguf", "--to-hf", "d"], /give one output/);
  await usage(["--merge", "--to", "a.gguf"], /--merge needs --adapter/);
  await usage(["--adapter", rsDir, "--to", "a.gguf", "--type", "q8_0"], /--type applies to GGUF model exports .*a LoRA GGUF is written in f32/);
  await usage(["--adapter", rsDir, "--merge", "--to-hf", "d", "--type", "f16"], /--to-hf writes f32 safetensors/);
  await usage(["--adapter", rsDir, "--to-hf", "d"], /--to-hf with --adapter writes the merged model: add --merge/);
  await usage(["--to", "a.gguf", "--type", "q4_0"], /--type must be one of f32, f16, q8_0, q4_k, got "q4_0"/);
});
