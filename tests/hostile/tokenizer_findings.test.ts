/**
 * Issue #17 finding 7: tokenizer.json files that used to allocate without bound, or load and
 * tokenize every text to nothing or to id 0, are refused at load naming the file and field.
 */
import assert from "node:assert/strict";
import { PeftError } from "../../src/errors.ts";
import { Tokenizer } from "../../src/tokenizer/mod.ts";
import { gpt2TokenizerJson, storiesTokenizerJson } from "./tokenizer_files.ts";

const FILE = "hostile/tokenizer.json";

function refused(json: unknown, ...mentions: string[]) {
  const t0 = performance.now();
  assert.throws(() => Tokenizer.fromJSON(JSON.stringify(json), undefined, FILE), (e: unknown) => {
    assert.ok(e instanceof PeftError, `expected a PeftError, got ${e}`);
    for (const m of [FILE, ...mentions]) assert.ok(e.message.includes(m), `"${e.message}" should name ${m}`);
    return true;
  });
  assert.ok(performance.now() - t0 < 5000, "refused fast");
}

const clone = <T>(x: T): T => structuredClone(x);

Deno.test("finding 7: huge vocab ids are refused fast, without allocating for them", async () => {
  const base = await storiesTokenizerJson();
  const rss0 = Deno.memoryUsage().rss;
  for (const id of [1e9, 2 ** 32, 1e15]) {
    const j = clone(base) as { model: { vocab: Record<string, number> } };
    j.model.vocab["▁the"] = id;
    refused(j, 'model.vocab["▁the"]', String(id), "far beyond");
  }
  const j = clone(base) as { added_tokens: { id: number }[] };
  j.added_tokens[0].id = 1e9;
  refused(j, "added_tokens[0].id");
  assert.ok(Deno.memoryUsage().rss - rss0 < 200e6, "no runaway allocation");
});

Deno.test("finding 7: an empty vocab, duplicate ids and missing byte tokens are refused", async () => {
  const spm = await storiesTokenizerJson() as { model: { vocab: Record<string, number> } };
  const empty = clone(spm);
  empty.model.vocab = {};
  refused(empty, "model.vocab is empty");
  const dup = clone(spm);
  dup.model.vocab["▁the"] = dup.model.vocab["▁a"];
  refused(dup, "model.vocab[", "is also the id of");

  const gpt2 = await gpt2TokenizerJson() as { model: { vocab: Record<string, number> }; added_tokens: unknown[] };
  assert.equal(Tokenizer.fromJSON(JSON.stringify(gpt2), undefined, FILE).decode(Tokenizer.fromJSON(JSON.stringify(gpt2)).encode("Hello world", { addSpecial: false })), "Hello world", "the byte-level file itself works");
  for (const missing of [["Ġ"], ["a", "b", "c", "Ā"], Object.keys(gpt2.model.vocab).filter((t) => [...t].length === 1)]) {
    const j = clone(gpt2);
    for (const t of missing) delete j.model.vocab[t];
    // Reindex so the ids stay dense (only the single-byte tokens are gone).
    Object.keys(j.model.vocab).forEach((t, i) => (j.model.vocab[t] = i));
    j.added_tokens = [];
    refused(j, "model.vocab", "single-byte tokens");
  }
});
