import assert from "node:assert/strict";
import { loadModel } from "../../src/api/model.ts";
import { STORIES, testGpu } from "../helpers.ts";

const CARD_TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
const CARD_IDS = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337];

Deno.test("greedy generation from <s> gives the model card's ids and text, streamed in pieces", async () => {
  const model = await loadModel(STORIES, { gpu: await testGpu() });
  const ids: number[] = [];
  let text = "";
  const stream = model.generateStream([1], { temperature: 0, maxTokens: 40 });
  let r = await stream.next();
  while (!r.done) {
    if (r.value.id >= 0) ids.push(r.value.id);
    text += r.value.text;
    r = await stream.next();
  }
  assert.deepEqual(ids.slice(0, 20), CARD_IDS);
  assert.ok(text.startsWith(CARD_TEXT), text);
  assert.equal(r.value.completionTokens, 40);
  assert.equal(r.value.finishReason, "length");
  // The same from a text prompt: it tokenizes to BOS + the card's first 4 ids, is not echoed,
  // and the greedy continuation is the card's.
  assert.deepEqual(model.encodePrompt("Once upon a time"), [1, ...CARD_IDS.slice(0, 4)]);
  const fromText = await model.complete("Once upon a time", { temperature: 0, maxTokens: 16 });
  assert.ok(CARD_TEXT.startsWith("Once upon a time" + fromText), fromText);
  model.close();
});

Deno.test("seeded sampling is reproducible; stop strings end generation without being emitted", async () => {
  const model = await loadModel(STORIES, { gpu: await testGpu() });
  const o = { temperature: 0.9, topP: 0.9, topK: 40, seed: 7, maxTokens: 30 };
  const a = await model.complete("Once upon a time", o);
  const b = await model.complete("Once upon a time", o);
  const c = await model.complete("Once upon a time", { ...o, seed: 8 });
  assert.equal(a, b);
  assert.notEqual(a, c);
  const stopped = await model.complete([1], { temperature: 0, maxTokens: 40, stop: ["Lily"] });
  assert.equal(stopped, "Once upon a time, there was a little girl named ");
  model.close();
});

Deno.test("bad generation input: missing model path, prompt over the context, bad sampling values", async () => {
  await assert.rejects(loadModel("/nonexistent/model.gguf"), /model not found: \/nonexistent\/model\.gguf/);
  const model = await loadModel(STORIES, { gpu: await testGpu(), contextLength: 16 });
  await assert.rejects(model.complete("Once upon a time there was a little girl who lived in a big house with her mom", { maxTokens: 4 }), /context length is 16/);
  const ctx = await model.generateStream([1, 403], { temperature: 0, maxTokens: 100 });
  let r = await ctx.next();
  while (!r.done) r = await ctx.next();
  assert.equal(r.value.finishReason, "context");
  await assert.rejects(model.complete("x", { temperature: -1 }), /temperature/);
  await assert.rejects(model.complete("x", { topP: 0 }), /topP/);
  await assert.rejects(model.complete("x", { adapter: "missing" }), /no adapter named missing/);
  model.close();
});
