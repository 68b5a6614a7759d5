// llama.cpp's regex-list pre-tokenizers (src/llama-vocab.cpp, llm_tokenizer_bpe constructor):
// the WASM splitters (wasm/tokenizer/pretok.ts splitFamily, and the older gpt2 / llama3 / qwen2 /
// digits-gpt2 ones) against JavaScript RegExp with the `u` flag applied the way llama.cpp's
// unicode_regex_split does: each regex of the list splits every piece the previous one left, and
// both the matches and the gaps between them are pieces. \s / \S are written as
// \p{White_Space} / \P{White_Space} (the Unicode property our tables and llama.cpp's flags use;
// JS \s differs on U+0085 and U+FEFF).
import assert from "node:assert/strict";
import { GGUF_PRE_TYPES } from "../../src/tokenizer/gguf_vocab.ts";
import type { PreTokenizer } from "../../src/tokenizer/vocab_spec.ts";
import { ALGO, WasmEngine } from "../../src/tokenizer/wasm_engine.ts";
import { SHARED } from "../helpers.ts";
import { HARD_STRINGS } from "./hard_strings.ts";

const GPT2 = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`;
const CONTR = String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])`;
const LLAMA3 = String.raw`${CONTR}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
// DeepSeek-LLM's letter class, written with escapes: llama.cpp writes it with literal characters,
// six of which (U+1F7D, U+1FBE, U+1FD3, U+1FDB, U+2126, U+212A) NFC would change.
const DSL_LETTERS = String.raw`\u{41}-\u{5a}\u{61}-\u{7a}\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}`;
const CASED_A = String.raw`[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+`;
const CASED_B = String.raw`[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*`;
const BLOOM = " ?[^(\\s|.,!?…。，、।۔،)]+";

/** Regex lists as in llama.cpp (per family). */
const FAMILIES: Partial<Record<PreTokenizer, string[]>> = {
  "gpt2": [GPT2],
  "llama3": [LLAMA3],
  "qwen2": [LLAMA3.replace(String.raw`\p{N}{1,3}`, String.raw`\p{N}`)],
  "digits-gpt2": [String.raw`\p{N}`, GPT2],
  "deepseek-llm": [
    "[\r\n]",
    String.raw`\s?[${DSL_LETTERS}]+`,
    String.raw`\s?[!-/:-~！-／：-～‘-‟　-。]+`,
    String.raw`\s+$`,
    "[一-龥ࠀ-一가-퟿]+",
    String.raw`\p{N}+`,
  ],
  "deepseek-coder": ["[\r\n]", String.raw`\s?\p{L}+`, String.raw`\s?\p{P}+`, "[一-龥ࠀ-一가-퟿]+", String.raw`\p{N}`],
  "deepseek-v3": [
    String.raw`\p{N}{1,3}`,
    "[一-龥぀-ゟ゠-ヿ]+",
    String.raw`[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_` + "`" + String.raw`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
  ],
  "falcon": [String.raw`[\p{P}\$\+<=>\^~\|` + "`]+", GPT2, "[0-9][0-9][0-9]"],
  "default": [String.raw`[\p{P}\$\+<=>\^~\|]+`, GPT2, String.raw`\p{N}+`, "[0-9][0-9][0-9]"],
  "gpt-4o": [
    `${CASED_A}${CONTR}?|${CASED_B}${CONTR}?|` + String.raw`\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
  ],
  "tekken": [`${CASED_A}|${CASED_B}|` + String.raw`\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`],
  "bloom": [BLOOM],
  "viking": [BLOOM, String.raw`\p{N}`],
};

function compile(src: string): RegExp {
  return new RegExp(src.replaceAll("\\s", "\\p{White_Space}").replaceAll("\\S", "\\P{White_Space}"), "gu");
}

/** llama.cpp unicode_regex_split: every regex splits every piece; matches and gaps both kept. */
export function regexSplit(text: string, regexes: RegExp[]): string[] {
  let pieces = text.length > 0 ? [text] : [];
  for (const re of regexes) {
    const next: string[] = [];
    for (const p of pieces) {
      let last = 0;
      for (const m of p.matchAll(re)) {
        if (m[0].length === 0) continue;
        if (m.index > last) next.push(p.slice(last, m.index));
        next.push(m[0]);
        last = m.index + m[0].length;
      }
      if (last < p.length) next.push(p.slice(last));
    }
    pieces = next;
  }
  return pieces;
}

function engine(): WasmEngine {
  return new WasmEngine({
    tokenBytes: Array.from({ length: 256 }, (_, b) => new Uint8Array([b])),
    algorithm: ALGO.bpeBytes,
    byteTokens: Int32Array.from({ length: 256 }, (_, b) => b),
    unkId: -1,
    ignoreMerges: false,
    chunkSafe: false,
    escapeSpaces: false,
    fuseUnk: false,
    pre: "gpt2",
  });
}

const lines = (await Deno.readTextFile(`${SHARED}data/tinyshakespeare.txt`)).split("\n");
const extra = [
  "HelloWorld ÉCOLE éZ's Z's ABC's don'T x/y\n/ a//\r\n", "über-Straße ΣΊΣΥΦΟΣ ǅungla ǈ", "12345 1,2345.678 ١٢٣٤٥٦٧", "\u0301a \u0301 \u200d\u200da",
  "中文ひらがなカタカナ한국어 漢字123", "(a|b) ...!? 。，、 । ۔ ، … end", "tab\t\t\n\n  x  \n", "$+<=>^~|`x` ok", "ώ ι ΐ Ί Ω K ℭ", "'''s '", "  ",
];
const texts = [...HARD_STRINGS, ...extra, ...lines.slice(0, 3000), lines.join("\n").slice(0, 20000)];
const eng = engine();

for (const [pre, list] of Object.entries(FAMILIES) as Array<[PreTokenizer, string[]]>) {
  Deno.test(`pre-tokenizer ${pre}: pieces equal llama.cpp's regex list (JS RegExp) on hard strings + 3000 lines`, () => {
    const res = list.map(compile);
    const bad: string[] = [];
    for (const t of texts) {
      const want = regexSplit(t, res);
      const got = eng.pretokenize(t, pre);
      if (JSON.stringify(got) !== JSON.stringify(want)) bad.push(`${JSON.stringify(t.slice(0, 100))}\n  got  ${JSON.stringify(got)}\n  want ${JSON.stringify(want)}`);
    }
    assert.equal(bad.length, 0, `${bad.length} differ:\n${bad.slice(0, 4).join("\n")}`);
  });
}

Deno.test("every GGUF_PRE_TYPES family has a regex-list test here", () => {
  for (const [name, fam] of Object.entries(GGUF_PRE_TYPES)) assert.ok(FAMILIES[fam], `${name} -> ${fam}`);
});

// Random strings over a pool of the characters the regexes treat differently (cased ASCII and
// non-ASCII letters, contractions, digits of several scripts, marks, P vs S, the DeepSeek / Bloom
// ranges, every kind of whitespace incl. \r\n), seeded so a failure reproduces.
const POOL = [..."aZbYzA'sStTrReEvVmMlLdD 0123456789٣", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u0085", "\u2028", "\ufeff",
  ..."éÉßǅǈΣσΊώιΩKℭ𐐀ﬁＡｚ", ..."中文한ひカ漢ࠀ", "\u0301", "\u0915\u094d", ..."!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~", ..."…。，、।۔،‘’“”«»¿¡", ..."€£©™½²Ⅻ①", "\u200d", "\u00ad", "👍🏽", "🦙"];
function rng(seed: number) {
  return () => ((seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) | 0) >>> 0) / 2 ** 32;
}
for (const [pre, list] of Object.entries(FAMILIES) as Array<[PreTokenizer, string[]]>) {
  Deno.test(`pre-tokenizer ${pre}: pieces equal the regex list on 3000 random strings`, () => {
    const res = list.map(compile);
    const r = rng(0x9e3779b9 ^ pre.length);
    const bad: string[] = [];
    for (let n = 0; n < 3000; n++) {
      let t = "";
      const len = 1 + Math.floor(r() * 24);
      for (let i = 0; i < len; i++) t += POOL[Math.floor(r() * POOL.length)];
      const want = regexSplit(t, res);
      const got = eng.pretokenize(t, pre);
      if (JSON.stringify(got) !== JSON.stringify(want)) bad.push(`${JSON.stringify(t)}\n  got  ${JSON.stringify(got)}\n  want ${JSON.stringify(want)}`);
    }
    assert.equal(bad.length, 0, `${bad.length} differ:\n${bad.slice(0, 4).join("\n")}`);
  });
}

Deno.test("encode() runs the new families: with ignore_merges and every oracle piece a token, one id per piece", () => {
  const sample = [...HARD_STRINGS, ...extra, ...lines.slice(0, 200)];
  for (const pre of ["deepseek-llm", "deepseek-coder", "deepseek-v3", "falcon", "default", "gpt-4o", "tekken", "bloom", "viking"] as PreTokenizer[]) {
    const res = FAMILIES[pre]!.map(compile);
    const enc = new TextEncoder();
    const ids = new Map<string, number>();
    const tokenBytes = Array.from({ length: 256 }, (_, b) => new Uint8Array([b]));
    for (const t of sample) {
      for (const p of regexSplit(t, res)) {
        if (!ids.has(p) && enc.encode(p).length > 1) {
          ids.set(p, tokenBytes.length);
          tokenBytes.push(enc.encode(p));
        }
      }
    }
    const e = new WasmEngine({
      tokenBytes, algorithm: ALGO.bpeBytes, byteTokens: Int32Array.from({ length: 256 }, (_, b) => b), unkId: -1,
      ignoreMerges: true, chunkSafe: false, escapeSpaces: false, fuseUnk: false, pre,
    });
    for (const t of sample) {
      const want = regexSplit(t, res).map((p) => ids.get(p) ?? enc.encode(p)[0]);
      const got: number[] = [];
      e.encodeInto(t, false, got);
      assert.deepEqual(got, want, `${pre}: ${JSON.stringify(t)}`);
    }
  }
});

Deno.test("GGUF tokenizer.ggml.pre: new names pick their family; ignore_merges only where llama.cpp sets it", async () => {
  const { vocabFromGGUF } = await import("../../src/tokenizer/gguf_vocab.ts");
  const { BYTE_TO_CHAR } = await import("../../src/tokenizer/byte_level.ts");
  const fake = (pre: string) => {
    // A byte-level vocabulary must hold every single-byte token (load-time check), then "ab".
    const meta: Record<string, unknown> = {
      "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": [...BYTE_TO_CHAR, "ab"], "tokenizer.ggml.merges": ["a b"], "tokenizer.ggml.pre": pre,
    };
    return { get: (k: string) => meta[k] } as unknown as Parameters<typeof vocabFromGGUF>[0];
  };
  const cases: Array<[string, PreTokenizer, boolean]> = [
    ["deepseek-llm", "deepseek-llm", false], ["deepseek-coder", "deepseek-coder", false], ["deepseek-v3", "deepseek-v3", false],
    ["falcon", "falcon", false], ["gpt-4o", "gpt-4o", false], ["llama4", "gpt-4o", false], ["tekken", "tekken", true],
    ["default", "default", false], ["bloom", "bloom", false], ["poro-chat", "bloom", false], ["viking", "viking", false],
    ["chatglm-bpe", "llama3", false], ["jais", "gpt2", false], ["exaone", "digits-gpt2", false], ["llama-bpe", "llama3", true],
    ["dbrx", "llama3", false],
  ];
  for (const [name, fam, ignore] of cases) {
    const v = vocabFromGGUF(fake(name), `${name}.gguf`);
    assert.equal(v.pre, fam, name);
    assert.equal(v.ignoreMerges, ignore, name);
  }
});
