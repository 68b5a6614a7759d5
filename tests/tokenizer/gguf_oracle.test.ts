// GGUF vocabs against npm oracles that reproduce llama.cpp's vectors: GPT-2 vs gpt-tokenizer
// (r50k_base) on all of tinyshakespeare + hard strings; llama-spm vs llama-tokenizer-js (slow,
// so the hard strings and 1500 lines).
import assert from "node:assert/strict";
import { encode as r50kEncode } from "gpt-tokenizer/encoding/r50k_base";
import llamaTokenizer from "llama-tokenizer-js";
import { readGGUF } from "../../src/io/gguf.ts";
import { Tokenizer } from "../../src/tokenizer/mod.ts";
import { SHARED } from "../helpers.ts";
import { HARD_STRINGS } from "./hard_strings.ts";

const lines = (await Deno.readTextFile(`${SHARED}data/tinyshakespeare.txt`)).split("\n");

async function load(name: string): Promise<Tokenizer> {
  const path = `${SHARED}tokenizers/ggml-vocab-${name}.gguf`;
  const g = await readGGUF(path);
  try {
    return Tokenizer.fromGGUF(g, path);
  } finally {
    await g.close();
  }
}

Deno.test("gpt-2 GGUF: ids equal gpt-tokenizer r50k_base on tinyshakespeare lines + hard strings, and round trip", async () => {
  const tok = await load("gpt-2");
  const whole = lines.join("\n");
  for (const t of [...lines, ...HARD_STRINGS, whole]) {
    const got = tok.encode(t, { addSpecial: false, parseSpecial: false });
    assert.deepEqual(got, r50kEncode(t), JSON.stringify(t.slice(0, 80)));
    assert.equal(tok.decode(got), t);
  }
});

Deno.test("llama-spm GGUF: ids equal llama-tokenizer-js on hard strings + 1500 lines, and round trip", async () => {
  const tok = await load("llama-spm");
  // Strings with U+FEFF are checked by the BOM test below (it depends on the GGUF reader).
  for (const t of [...HARD_STRINGS.filter((s) => !s.includes("\ufeff")), ...lines.slice(0, 1500)]) {
    const got = tok.encode(t, { addSpecial: false, parseSpecial: false });
    // llama-tokenizer-js returns [] for "" and always adds the preceding space otherwise.
    const want = t === "" ? [] : llamaTokenizer.encode(t, false, true);
    assert.deepEqual(got, want, JSON.stringify(t));
    assert.equal(tok.decode(got), t);
  }
});

Deno.test("llama-spm GGUF: the U+FEFF token keeps its BOM (GGUF strings must be decoded with ignoreBOM)", async () => {
  const tok = await load("llama-spm");
  assert.equal(tok.idToToken(30143), "\ufeff", "src/io/gguf.ts strips a leading BOM from metadata strings: its TextDecoder needs { ignoreBOM: true }");
  const t = "\u200b zero\u200cwidth\u200d joiners \ufeff bom \u00ad soft";
  assert.deepEqual(tok.encode(t, { addSpecial: false }), llamaTokenizer.encode(t, false, true));
});
