// stories260K's own 512-token SentencePiece vocab: byte fallback, BOS, round trips, streaming.
import assert from "node:assert/strict";
import { readGGUF } from "../../src/io/gguf.ts";
import { Tokenizer } from "../../src/tokenizer/mod.ts";
import { STORIES } from "../helpers.ts";

const g = await readGGUF(STORIES);
const tok = Tokenizer.fromGGUF(g, STORIES);
await g.close();

Deno.test("stories260K: metadata", () => {
  assert.equal(tok.vocabSize, 512);
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  assert.equal(tok.idToToken(1), "<s>");
  assert.equal(tok.tokenToId("<0x41>"), 3 + 0x41);
  assert.equal(tok.tokenToId("no such token"), undefined);
});

Deno.test("stories260K: BOS, merges and round trip", () => {
  const text = "Once upon a time, there was a little girl named Lily.";
  const ids = tok.encode(text);
  assert.equal(ids[0], 1);
  assert.ok(ids.length < text.length / 2, `merges happened (${ids.length} ids for ${text.length} chars)`);
  assert.ok(ids.slice(1).every((id) => id > 258), "plain English needs no byte fallback");
  assert.equal(tok.decode(ids), "<s>" + text);
  assert.equal(tok.decode(ids, { skipSpecial: true }), text);
  assert.deepEqual(tok.encode(text, { addSpecial: false }), ids.slice(1));
});

Deno.test("stories260K: byte fallback for chars outside the vocab", () => {
  const text = "日本 🦙 ok";
  const ids = tok.encode(text, { addSpecial: false });
  const bytes = new TextEncoder().encode("日本");
  // Each byte of 日本 is its own <0xNN> token (ids 3..258).
  const fallback = ids.filter((id) => id >= 3 && id < 259).map((id) => id - 3);
  assert.deepEqual(fallback.slice(0, bytes.length), [...bytes]);
  assert.equal(tok.decode(ids), text);
});

Deno.test("stories260K: special tokens only with parseSpecial", () => {
  assert.deepEqual(tok.encode("</s>", { addSpecial: false }), [2]);
  const safe = tok.encode("</s>", { addSpecial: false, parseSpecial: false });
  assert.ok(!safe.includes(2), `untrusted </s> became ${safe}`);
  assert.equal(tok.decode(safe), "</s>");
});

Deno.test("stories260K: stream decoder never splits a UTF-8 character", () => {
  const text = "Tim saw a 🦙 and said: é日本!";
  const ids = tok.encode(text, { addSpecial: false });
  const sd = tok.createStreamDecoder();
  let streamed = "";
  for (const id of ids) {
    const piece = sd.push(id);
    assert.ok(!piece.includes("\uFFFD"), `broken character emitted at id ${id}`);
    streamed += piece;
  }
  streamed += sd.flush();
  assert.equal(streamed, text);
  // A dangling lead byte comes out as U+FFFD only at flush.
  const sd2 = tok.createStreamDecoder();
  assert.equal(sd2.push(3 + 0xe6), "");
  assert.equal(sd2.flush(), "\uFFFD");
});

Deno.test("stories260K: a stream continuing a prompt keeps the continuation's leading space", () => {
  const text = "Once upon a time, Tim and Sue went to the park. They saw a big dog!";
  const ids = tok.encode(text);
  for (const k of [1, 2, 5, ids.length - 1]) {
    const sd = tok.createStreamDecoder({ after: ids.slice(0, k) });
    const rest = ids.slice(k).map((id) => sd.push(id)).join("") + sd.flush();
    assert.equal(tok.decode(ids.slice(0, k)) + rest, tok.decode(ids), `split at ${k}`);
  }
  const sd = tok.createStreamDecoder({ after: tok.encode("Once") });
  assert.equal(sd.push(tok.encode("Once upon", { addSpecial: false })[1]), " upon");
});

Deno.test("stories260K: bad ids are named", () => {
  assert.throws(() => tok.decode([512]), (e: Error & { code?: string }) => e.code === "TOKENIZER_BAD_ID" && /512/.test(e.message));
  assert.throws(() => tok.idToToken(-1), (e: Error & { code?: string }) => e.code === "TOKENIZER_BAD_ID");
});
