import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import llamaTokenizer from "llama-tokenizer-js";
import {
  batches,
  batchesPerEpoch,
  type ChatMessage,
  evalBatches,
  type Example,
  IGNORE_INDEX,
  loadDataset,
  type TextTokenizer,
} from "../../src/train/data.ts";
import { PeftError } from "../../src/errors.ts";
import { readGGUF } from "../../src/io/gguf.ts";
import { SHARED, STORIES } from "../helpers.ts";
import { NAMED_CHAT_TEMPLATES, Tokenizer } from "../../src/tokenizer/mod.ts";
import { defaultChatPrompt } from "../../src/serve/engine.ts";

const SHAKESPEARE = `${SHARED}data/tinyshakespeare.txt`;

/**
 * A real, reversible byte-level tokenizer: id = byte + 3 (0 pad, 1 BOS, 2 EOS), plus ChatML's two
 * special tokens when parseSpecial is set, and ChatML's real Jinja chat template.
 */
const SPECIALS = ["<|im_start|>", "<|im_end|>"];
const CHATML = new Template(
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
);
const bytes: TextTokenizer & { decode(ids: ArrayLike<number>): string } = {
  bosId: 1,
  eosId: 2,
  encode(text, o = {}) {
    const ids: number[] = o.addSpecial ? [1] : [];
    const parts = o.parseSpecial ? text.split(/(<\|im_start\|>|<\|im_end\|>)/) : [text];
    for (const p of parts) {
      const s = SPECIALS.indexOf(p);
      if (s >= 0) ids.push(259 + s);
      else for (const b of new TextEncoder().encode(p)) ids.push(b + 3);
    }
    return ids;
  },
  decode(ids) {
    let out = "";
    const buf: number[] = [];
    const flush = () => {
      out += new TextDecoder().decode(new Uint8Array(buf));
      buf.length = 0;
    };
    for (const id of Array.from(ids)) {
      if (id >= 259) (flush(), out += SPECIALS[id - 259]);
      else if (id >= 3) buf.push(id - 3);
      else (flush(), out += ["<pad>", "<s>", "</s>"][id]);
    }
    flush();
    return out;
  },
  applyChatTemplate(messages: ChatMessage[], o = {}) {
    return CHATML.render({ messages, add_generation_prompt: !!o.addGenerationPrompt });
  },
};

/** llama-tokenizer-js (Llama 1/2 SentencePiece vocab) behind the TextTokenizer interface. */
const llama: TextTokenizer = {
  bosId: 1,
  eosId: 2,
  encode: (text, o = {}) => llamaTokenizer.encode(text, !!o.addSpecial, true),
};

const dir = await mkdtemp(join(tmpdir(), "peft-data-"));
async function file(name: string, content: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, content);
  return p;
}
const targets = (e: Example) => Array.from(e.target).filter((t) => t !== IGNORE_INDEX);
function throwsCode(p: Promise<unknown>, code: string, re: RegExp) {
  return assert.rejects(p, (e: unknown) => e instanceof PeftError && e.code === code && re.test(e.message));
}

Deno.test("plain text: tinyshakespeare in byte tokens, windows sharing one token, eval from the end", async () => {
  const text = await Deno.readTextFile(SHAKESPEARE);
  const ds = await loadDataset(SHAKESPEARE, bytes, { seqLen: 128, evalFraction: 0.05, seed: 1 });
  const n = new TextEncoder().encode(text).length + 1; // + BOS
  assert.equal(ds.stats.tokens, n);
  const evalLen = Math.round(0.05 * n);
  assert.equal(ds.train.length, Math.floor((n - evalLen - 129) / 128) + 1);
  assert.equal(ds.eval.length, Math.floor((evalLen - 129) / 128) + 1);
  assert.equal(ds.train[0].input[0], 1); // BOS
  assert.equal(bytes.decode(ds.train[0].input.slice(1, 15)), "First Citizen:");
  for (let i = 1; i < ds.train.length; i++) assert.equal(ds.train[i].input[0], ds.train[i - 1].target[127]);
  for (const e of ds.train) assert.deepEqual(e.input.slice(1), e.target.slice(0, 127));
  // eval text is the tail of the file, not seen by any train window
  const evalText = ds.eval.map((e) => bytes.decode(e.input)).join("");
  const tailStart = n - evalLen - 1; // byte offset in the file where the eval tokens begin
  assert.equal(evalText, text.slice(tailStart, tailStart + ds.eval.length * 128));
  const lastTrainEnd = (ds.train.length - 1) * 128 + 128; // last token index (file tokens) a train window reaches
  assert.ok(lastTrainEnd <= n - evalLen);
  assert.equal(ds.stats.train.lossTokens, ds.train.length * 128);
  assert.equal(ds.stats.eval.lossTokens, ds.eval.length * 128);
});

Deno.test("plain text: tinyshakespeare with the real Llama tokenizer", async () => {
  const seqLen = 64;
  const ds = await loadDataset(SHAKESPEARE, llama, { seqLen, evalFraction: 0.01, seed: 1 });
  const head = llamaTokenizer.encode("First Citizen:\nBefore we proceed", false, true);
  assert.deepEqual(Array.from(ds.train[0].input.slice(0, head.length + 1)), [1, ...head]);
  assert.ok(ds.stats.tokens > 300_000 && ds.stats.tokens < 400_000, `tokens ${ds.stats.tokens}`);
  assert.equal(ds.train.length + ds.eval.length, Math.floor((ds.stats.tokens - Math.round(0.01 * ds.stats.tokens) - 65) / 64) + 1 +
    Math.floor((Math.round(0.01 * ds.stats.tokens) - 65) / 64) + 1);
  for (const e of [...ds.train, ...ds.eval]) for (const t of e.input) assert.ok(t >= 0 && t < 32000);
  // eval windows decode to text of the file's last 1%; the last train window to text before it
  const text = await Deno.readTextFile(SHAKESPEARE);
  const evalSnippet = llamaTokenizer.decode(Array.from(ds.eval[ds.eval.length - 1].target), false, true).slice(-60);
  assert.ok(text.lastIndexOf(evalSnippet) > 0.985 * text.length, `eval snippet ${JSON.stringify(evalSnippet)}`);
  const firstEval = llamaTokenizer.decode(Array.from(ds.eval[0].input.slice(2)), false, true).slice(0, 60);
  const lastTrain = llamaTokenizer.decode(Array.from(ds.train[ds.train.length - 1].target.slice(2)), false, true).slice(-60);
  assert.ok(text.indexOf(lastTrain) < text.lastIndexOf(firstEval), "train text precedes eval text");
});

Deno.test("plain text: stride, maxExamples and strided eval masking", async () => {
  const p = await file("abc.txt", "abcdefghijklmnopqrstuvwxyz".repeat(4)); // 104 bytes + BOS
  const ds = await loadDataset(p, bytes, { seqLen: 8, stride: 4, evalFraction: 0, seed: 1, maxExamples: 5 });
  assert.equal(ds.train.length, 5);
  assert.equal(ds.stats.tokens, 4 * 4 + 9);
  assert.equal(bytes.decode(ds.train[1].input), "defghijk");
  const ev = await loadDataset(p, bytes, { seqLen: 8, stride: 4, evalFraction: 0.5, seed: 1 });
  // every eval token after the first window is scored once: the first 4 targets of later windows are masked
  assert.equal(targets(ev.eval[0]).length, 8);
  for (const e of ev.eval.slice(1)) assert.deepEqual(Array.from(e.target.slice(0, 4)), [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]);
  assert.equal(ev.stats.eval.lossTokens, 8 + 4 * (ev.eval.length - 1));
});

Deno.test("bad data files: missing, empty, shorter than one sequence, too short to split", async () => {
  await throwsCode(loadDataset(join(dir, "nope.txt"), bytes, { seqLen: 8, evalFraction: 0, seed: 1 }), "DATA_NOT_FOUND", /nope\.txt: not found/);
  await throwsCode(loadDataset(await file("empty.txt", " \n\n"), bytes, { seqLen: 8, evalFraction: 0, seed: 1 }), "DATA_EMPTY", /empty\.txt is empty/);
  await throwsCode(
    loadDataset(await file("short.txt", "hello"), bytes, { seqLen: 128, evalFraction: 0, seed: 1 }),
    "DATA_TOO_SHORT",
    /short\.txt is too short for seqLen 128: needs at least seqLen\+1 = 129 tokens, has 6/,
  );
  await throwsCode(
    loadDataset(await file("short2.txt", "x".repeat(12)), bytes, { seqLen: 8, evalFraction: 0.1, seed: 1 }),
    "DATA_TOO_SHORT",
    /needs at least 2 × \(seqLen\+1\) = 18 tokens, has 13/,
  );
  await throwsCode(loadDataset(SHAKESPEARE, bytes, { seqLen: 0, evalFraction: 0, seed: 1 }), "BAD_DATA_OPTION", /seqLen/);
  await throwsCode(loadDataset(SHAKESPEARE, bytes, { seqLen: 8, evalFraction: 1, seed: 1 }), "BAD_DATA_OPTION", /evalFraction/);
});

Deno.test("bad data files: binary, NUL-filled, UTF-16 or invalid UTF-8 text is refused naming the file (issue #17)", async () => {
  const write = async (name: string, b: Uint8Array) => {
    const p = join(dir, name);
    await writeFile(p, b);
    return p;
  };
  const o = { seqLen: 8, evalFraction: 0, seed: 1 };
  const utf16 = new Uint8Array([0xff, 0xfe, ...[..."Hello, world. ".repeat(20)].flatMap((c) => [c.charCodeAt(0), 0])]);
  await throwsCode(loadDataset(await write("utf16.txt", utf16), bytes, o), "DATA_NOT_TEXT", /utf16\.txt is UTF-16/);
  // The same text without a byte order mark: its NULs give it away.
  await throwsCode(loadDataset(await write("utf16-nobom.txt", utf16.slice(2)), bytes, o), "DATA_NOT_TEXT", /utf16-nobom\.txt contains NUL bytes \(the first at byte 1\)/);
  await throwsCode(loadDataset(await write("zeros.txt", new Uint8Array(4096)), bytes, o), "DATA_NOT_TEXT", /zeros\.txt contains NUL bytes/);
  const utf8Text = new TextEncoder().encode("line one\tcaf\u00e9\n\fline two\n".repeat(4));
  const bad = new Uint8Array([...new TextEncoder().encode("line one\nline two caf"), 0xe9, 0x0a]);
  await throwsCode(loadDataset(await write("latin1.txt", bad), bytes, o), "DATA_NOT_TEXT", /latin1\.txt is not valid UTF-8 \(the first bad byte is on line 2\)/);
  const random = Uint8Array.from({ length: 8192 }, (_, i) => (i * 2654435761) >>> 24 || 1);
  await throwsCode(loadDataset(await write("random.bin", random), bytes, o), "DATA_NOT_TEXT", /random\.bin/);
  const ctrl = new TextEncoder().encode("\x01\x02\x03abc\x04\x05\x06".repeat(200));
  await throwsCode(loadDataset(await write("ctrl.txt", ctrl), bytes, o), "DATA_NOT_TEXT", /ctrl\.txt looks binary/);
  // Valid UTF-8 with a byte order mark and a few tabs/form feeds is text.
  const ok = await loadDataset(await write("bom.txt", new Uint8Array([0xef, 0xbb, 0xbf, ...utf8Text])), bytes, o);
  assert.ok(ok.train.length > 0);
});

Deno.test("JSONL: chat records without a chat template name the data file and the model's tokenizer file (issue #17)", async () => {
  const g = await readGGUF(STORIES);
  const tok = Tokenizer.fromGGUF(g);
  await g.close();
  const p = await file("chat-none.jsonl", JSON.stringify({ messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello" }] }) + "\n");
  await throwsCode(loadDataset(p, tok, { seqLen: 32, evalFraction: 0, seed: 1 }), "DATA_NO_CHAT_TEMPLATE", new RegExp(`chat-none\\.jsonl:1: .*${STORIES.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
});

Deno.test("JSONL: text and prompt/completion records mask exactly the non-loss tokens", async () => {
  const p = await file("pc.jsonl", [
    JSON.stringify({ prompt: "Q: 2+2?", completion: " A: 4" }),
    "",
    JSON.stringify({ text: "hi" }),
  ].join("\n"));
  const ds = await loadDataset(p, bytes, { seqLen: 16, evalFraction: 0, seed: 1 });
  assert.equal(ds.train.length, 2);
  const [pc, tx] = ds.train;
  assert.equal(bytes.decode(pc.input.slice(0, 13)), "<s>Q: 2+2? A: 4");
  // targets: nothing for the prompt, then " A: 4" and EOS
  assert.equal(bytes.decode(targets(pc)), " A: 4</s>");
  assert.equal(pc.target[6], IGNORE_INDEX); // predicting "?" is prompt
  assert.equal(pc.target[7], " ".charCodeAt(0) + 3); // predicting the completion's first token
  assert.equal(bytes.decode(targets(tx)), "hi</s>");
  assert.deepEqual(Array.from(tx.target.slice(3)), new Array(13).fill(IGNORE_INDEX)); // padding
  assert.equal(ds.stats.train.lossTokens, 6 + 3);
  assert.equal(ds.stats.records, 2);
});

Deno.test("JSONL: chat records train only on assistant turns (incremental ChatML rendering)", async () => {
  const messages = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello!" },
    { role: "user", content: "Bye" },
    { role: "assistant", content: "See you." },
  ];
  const p = await file("chat.jsonl", JSON.stringify({ messages }) + "\n");
  const ds = await loadDataset(p, bytes, { seqLen: 128, evalFraction: 0, seed: 1 });
  const e = ds.train[0];
  assert.equal(bytes.decode(e.input).replace(/(<\/s>)+$/, ""), bytes.applyChatTemplate!(messages).slice(0, -1));
  // loss spans: each assistant turn's content, its <|im_end|> and newline, nothing of the user turns
  assert.equal(bytes.decode(targets(e)), "Hello!<|im_end|>\nSee you.<|im_end|>\n");
  const noTemplate = { ...bytes, applyChatTemplate: undefined };
  await throwsCode(loadDataset(p, noTemplate, { seqLen: 128, evalFraction: 0, seed: 1 }), "DATA_NO_CHAT_TEMPLATE", /chat\.jsonl:1: .*chat template/);
});

Deno.test("JSONL: chat records on a model without a chat template: a named or given template (chatTemplate)", async () => {
  const tok = await Tokenizer.fromFile(STORIES); // stories260K's GGUF has no chat template
  const messages = [{ role: "user" as const, content: "Hi there" }, { role: "assistant" as const, content: "Hello!" }];
  const p = await file("chat-plain.jsonl", JSON.stringify({ messages }) + "\n");
  const o = { seqLen: 64, evalFraction: 0, seed: 1 };
  await throwsCode(loadDataset(p, tok, o), "DATA_NO_CHAT_TEMPLATE", /chat-plain\.jsonl:1: .*--chat-template <file\.jinja\|plain\|chatml>/);
  const ds = await loadDataset(p, tok, { ...o, chatTemplate: NAMED_CHAT_TEMPLATES.plain });
  const e = ds.train[0];
  // "plain" is the server's fallback prompt: BOS, "role: content" lines, "assistant:"
  assert.equal(e.input[0], tok.bosId);
  assert.equal(tok.decode([...e.input], { skipSpecial: true }).trimStart(), defaultChatPrompt(messages, false).slice(0, -1));
  assert.deepEqual(
    tok.encode(tok.applyChatTemplate(messages.slice(0, 1), { template: NAMED_CHAT_TEMPLATES.plain }), { addSpecial: false, parseSpecial: true }),
    tok.encode(defaultChatPrompt(messages.slice(0, 1)), { addSpecial: true, parseSpecial: false }),
  );
  assert.equal(tok.decode(targets(e)).trim(), "Hello!");
  const own = await loadDataset(p, tok, { ...o, chatTemplate: "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}" });
  assert.equal(tok.decode(targets(own.train[0])).trim(), "<assistant>Hello!"); // no generation prompt: the turn is all assistant
});

Deno.test("JSONL: packing concatenates records, keeps every loss token, never predicts across records", async () => {
  const recs = Array.from({ length: 20 }, (_, i) => JSON.stringify({ prompt: `p${i}:`, completion: `c${i}` }));
  const p = await file("pack.jsonl", recs.join("\n"));
  const plain = await loadDataset(p, bytes, { seqLen: 32, evalFraction: 0, seed: 1 });
  const packed = await loadDataset(p, bytes, { seqLen: 32, evalFraction: 0, seed: 1, packing: true });
  assert.equal(plain.train.length, 20);
  assert.ok(packed.train.length < 20 / 2, `${packed.train.length} packed sequences`);
  assert.equal(packed.stats.train.lossTokens, plain.stats.train.lossTokens);
  const all = packed.train.map((e) => bytes.decode(targets(e))).join("");
  assert.equal(all, Array.from({ length: 20 }, (_, i) => `c${i}</s>`).join(""));
  for (const e of packed.train) {
    for (let t = 0; t < 32; t++) if (e.input[t] === 2 && t + 1 < 32) assert.equal(e.target[t], IGNORE_INDEX, "EOS -> next BOS");
  }
});

Deno.test("JSONL: split is seeded, disjoint and complete", async () => {
  const recs = Array.from({ length: 40 }, (_, i) => JSON.stringify({ text: `record ${i}` }));
  const p = await file("split.jsonl", recs.join("\n"));
  const load = (seed: number) => loadDataset(p, bytes, { seqLen: 16, evalFraction: 0.25, seed });
  const a = await load(1), b = await load(1), c = await load(2);
  const ids = (ex: Example[]) => ex.map((e) => bytes.decode(e.input).replace(/<s>|<\/s>|<pad>/g, ""));
  assert.equal(a.eval.length, 10);
  assert.deepEqual(ids(a.eval), ids(b.eval));
  assert.notDeepEqual(ids(a.eval), ids(c.eval));
  assert.deepEqual([...ids(a.train), ...ids(a.eval)].sort(), recs.map((r) => JSON.parse(r).text).sort());
});

Deno.test("JSONL: bad lines name the file and line", async () => {
  const o = { seqLen: 16, evalFraction: 0, seed: 1 };
  await throwsCode(loadDataset(await file("bad.jsonl", '{"text": "ok"}\n{"text": oops}\n'), bytes, o), "DATA_BAD_JSON", /bad\.jsonl:2: invalid JSON/);
  await throwsCode(
    loadDataset(await file("shape.jsonl", '{"text": "ok"}\n\n{"input": "x", "output": "y"}\n'), bytes, o),
    "DATA_BAD_RECORD",
    /shape\.jsonl:3: unknown record shape with keys \[input, output\]/,
  );
  await throwsCode(loadDataset(await file("pc2.jsonl", '{"prompt": "x"}'), bytes, o), "DATA_BAD_RECORD", /pc2\.jsonl:1: "prompt" and "completion"/);
  await throwsCode(loadDataset(await file("arr.jsonl", "[1, 2]"), bytes, o), "DATA_BAD_RECORD", /arr\.jsonl:1: expected a JSON object/);
  await throwsCode(
    loadDataset(await file("msg.jsonl", '{"messages": [{"role": "user"}]}'), bytes, o),
    "DATA_BAD_RECORD",
    /msg\.jsonl:1: messages\[0\] must be/,
  );
  await throwsCode(loadDataset(await file("one.jsonl", '{"text": "ok"}'), bytes, { ...o, evalFraction: 0.1 }), "DATA_TOO_SHORT", /1 record\(s\)/);
});

Deno.test("batches: seeded per epoch, each example once, last batch keep/drop/pad", async () => {
  const ds = await loadDataset(SHAKESPEARE, bytes, { seqLen: 16, evalFraction: 0, seed: 1, maxExamples: 10 });
  const ex = ds.train;
  const firstTokens = (bs: ReturnType<typeof batches>) => bs.flatMap((b) => Array.from({ length: b.rows }, (_, r) => b.input[r * 16 + 1]));
  const e0 = batches(ex, 4, 7, 0), again = batches(ex, 4, 7, 0), e1 = batches(ex, 4, 7, 1);
  assert.deepEqual(e0, again);
  assert.notDeepEqual(firstTokens(e0), firstTokens(e1));
  assert.deepEqual(e0.map((b) => b.rows), [4, 4, 2]);
  assert.deepEqual([...firstTokens(e0)].sort(), ex.map((e) => e.input[1]).sort());
  assert.equal(e0.reduce((s, b) => s + b.lossTokens, 0), 10 * 16);
  assert.deepEqual(batches(ex, 4, 7, 0, { last: "drop" }).map((b) => b.rows), [4, 4]);
  const padded = batches(ex, 4, 7, 0, { last: "pad" });
  assert.deepEqual(padded.map((b) => b.rows), [4, 4, 4]);
  assert.equal(padded[2].lossTokens, 2 * 16);
  assert.ok(padded[2].target.slice(2 * 16).every((t) => t === IGNORE_INDEX));
  assert.equal(batchesPerEpoch(10, 4), 3);
  assert.equal(batchesPerEpoch(10, 4, "drop"), 2);
  assert.deepEqual(evalBatches(ex, 3).map((b) => b.input[1]), [ex[0].input[1], ex[3].input[1], ex[6].input[1], ex[9].input[1]]);
  assert.throws(() => batches(ex, 0, 1, 0), /batchSize must be an integer >= 1/);
});

Deno.test("cleanup", async () => {
  await rm(dir, { recursive: true, force: true });
});
