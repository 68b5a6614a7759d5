/**
 * Files without paths, as a web page has them: a model from bytes or a File (read by slices),
 * an adapter saved to bytes and loaded back from bytes or Files, training data as text. Each
 * gives what the path gives, and bad input gives one clear error naming the file.
 */
import assert from "node:assert/strict";
import { loadModel } from "../../src/api/model.ts";
import { blobSource, openByteSource } from "../../src/io/bytes.ts";
import { readGGUF } from "../../src/io/gguf.ts";
import { readAdapterFiles } from "../../src/io/peft_adapter.ts";
import { Tokenizer } from "../../src/tokenizer/mod.ts";
import { loadDataset } from "../../src/train/data.ts";
import { train } from "../../src/train/trainer.ts";
import { isErr, SHARED, STORIES, testGpu } from "../helpers.ts";

const storiesBytes = await Deno.readFile(STORIES);
const storiesFile = () => new File([storiesBytes], "stories260K.gguf");

Deno.test("byte inputs: a GGUF File is read by slices and gives the path's header and tensors", async () => {
  const fromPath = await readGGUF(STORIES);
  const fromFile = await readGGUF(storiesFile());
  const fromBuffer = await readGGUF(storiesBytes.buffer.slice(0), "buf.gguf");
  try {
    assert.equal(fromFile.source.name, "stories260K.gguf");
    assert.equal(fromBuffer.source.name, "buf.gguf");
    assert.deepEqual([...fromFile.tensors.keys()], [...fromPath.tensors.keys()]);
    assert.deepEqual(fromFile.get("tokenizer.ggml.tokens"), fromPath.get("tokenizer.ggml.tokens"));
    for (const name of ["token_embd.weight", "blk.4.ffn_down.weight", "output_norm.weight"]) {
      assert.deepEqual(await fromFile.readF32(name), await fromPath.readF32(name), name);
      assert.deepEqual(await fromBuffer.readF32(name), await fromPath.readF32(name), name);
    }
  } finally {
    await Promise.all([fromPath.close(), fromFile.close(), fromBuffer.close()]);
  }
});

Deno.test("byte inputs: a Blob source reads exact ranges and refuses reads past the end", async () => {
  const src = blobSource(new Blob([new Uint8Array([1, 2, 3, 4, 5, 6, 7])]), "seven.bin");
  assert.deepEqual(await src.read(2, 3), new Uint8Array([3, 4, 5]));
  assert.equal((await src.read(0, 0)).byteLength, 0);
  await assert.rejects(src.read(5, 3), isErr("FILE_TRUNCATED", "seven.bin", "past the end (7 bytes)"));
  await assert.rejects(openByteSource(42 as unknown as Uint8Array, "answer"), isErr("BAD_PARAMETER", "answer", "[object Number]"));
});

Deno.test("byte inputs: a file that is not GGUF is named in the error", async () => {
  await assert.rejects(readGGUF(new File(["these are notes\n"], "notes.txt")), isErr("GGUF_BAD_MAGIC", "notes.txt: not a GGUF file"));
  await assert.rejects(loadModel(new File(["{}"], "config.json"), { gpu: await testGpu() }), isErr("GGUF_BAD_MAGIC", "config.json: not a GGUF file"));
  await assert.rejects(readGGUF(new Uint8Array([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0])), isErr("GGUF_TRUNCATED", "<memory>"));
});

Deno.test("byte inputs: a model from a File generates what the path does; its adapter saves to bytes and loads back from bytes or Files", async () => {
  const gpu = await testGpu();
  const byPath = await loadModel(STORIES, { gpu });
  const byFile = await loadModel(storiesFile(), { gpu });
  const dir = await Deno.makeTempDir({ prefix: "byte-inputs-" });
  try {
    assert.equal(byFile.source, "stories260K.gguf");
    const g = { maxTokens: 24, temperature: 0 };
    assert.equal(await byFile.complete("Once upon a time", g), await byPath.complete("Once upon a time", g));

    // An adapter that changes the output (random B), trained two steps on pasted text.
    byFile.addAdapter("a", { peft_type: "LORA", r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"] }, 7);
    const text = (await Deno.readTextFile(`${SHARED}data/tinyshakespeare.txt`)).slice(0, 3000);
    const r = await train(byFile, { adapter: "a", data: { text, name: "pasted" }, seqLen: 16, batchSize: 2, maxSteps: 2, learningRate: 0.05, progress: false });
    assert.equal(r.steps, 2);
    const files = await byFile.saveAdapter("a");
    assert.deepEqual(Object.keys(files).sort(), ["adapter_config.json", "adapter_model.safetensors"]);
    assert.equal(JSON.parse(new TextDecoder().decode(files["adapter_config.json"])).base_model_name_or_path, "stories260K.gguf");

    // The same bytes as a directory save.
    await byFile.saveAdapter("a", dir);
    assert.deepEqual(await Deno.readFile(`${dir}/adapter_model.safetensors`), files["adapter_model.safetensors"]);
    assert.deepEqual(await Deno.readFile(`${dir}/adapter_config.json`), files["adapter_config.json"]);

    await byPath.loadAdapter("bytes", files);
    await byPath.loadAdapter("files", {
      "adapter_config.json": new File([files["adapter_config.json"]], "my_config.json"),
      "adapter_model.safetensors": new File([files["adapter_model.safetensors"]], "my_weights.safetensors"),
    });
    const trained = await byFile.complete("Once upon a time", { ...g, adapter: "a" });
    assert.notEqual(trained, await byFile.complete("Once upon a time", { ...g, adapters: [] }));
    assert.equal(await byPath.complete("Once upon a time", { ...g, adapter: "bytes" }), trained);
    assert.equal(await byPath.complete("Once upon a time", { ...g, adapter: "files" }), trained);
  } finally {
    byPath.close();
    byFile.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("byte inputs: P-tuning (saved as its computed prompt) and a bottleneck adapter (AdapterHub's adapter.safetensors) save to the bytes a directory save writes and load back", async () => {
  const gpu = await testGpu();
  const trainer = await loadModel(STORIES, { gpu });
  const loader = await loadModel(storiesFile(), { gpu });
  const text = (await Deno.readTextFile(`${SHARED}data/tinyshakespeare.txt`)).slice(0, 3000);
  const ids = trainer.encodePrompt("Once upon a time");
  const cases: [string, Record<string, unknown>, string][] = [
    ["pt", { peft_type: "P_TUNING", num_virtual_tokens: 4 }, "adapter_model.safetensors"],
    ["bn", { peft_type: "BOTTLENECK", config: "seq_bn" }, "adapter.safetensors"],
  ];
  try {
    for (const [name, config, weightsFile] of cases) {
      trainer.addAdapter(name, config, 3);
      await train(trainer, { adapter: name, data: { text }, seqLen: 16, batchSize: 2, maxSteps: 2, learningRate: 0.05, progress: false });
      const files = await trainer.saveAdapter(name);
      assert.deepEqual(Object.keys(files).sort(), [weightsFile, "adapter_config.json"].sort(), name);
      const dir = await Deno.makeTempDir({ prefix: "byte-methods-" });
      try {
        await trainer.saveAdapter(name, dir);
        assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), Object.keys(files).sort(), name);
        for (const [file, bytes] of Object.entries(files)) assert.deepEqual(await Deno.readFile(`${dir}/${file}`), bytes, `${name}: ${file}`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
      await loader.loadAdapter(name, { "adapter_config.json": files["adapter_config.json"], [weightsFile]: new File([files[weightsFile]], weightsFile) });
      const want = await trainer.logits(ids, { adapter: name }), got = await loader.logits(ids, { adapter: name });
      const base = await trainer.logits(ids, { adapters: [] });
      let diff = 0, change = 0;
      for (let t = 0; t < want.length; t++) {
        for (let v = 0; v < want[t].length; v++) {
          diff = Math.max(diff, Math.abs(got[t][v] - want[t][v]));
          change = Math.max(change, Math.abs(want[t][v] - base[t][v]));
        }
      }
      assert.ok(change > 1e-3, `${name}: the trained adapter changes nothing (${change})`);
      assert.ok(diff < 1e-4, `${name}: loaded from bytes, logits differ by ${diff}`);
    }
  } finally {
    trainer.close();
    loader.close();
  }
});

Deno.test("byte inputs: bad adapter files give one clear error naming the file", async () => {
  const weights = new Uint8Array(16);
  await assert.rejects(
    readAdapterFiles({ "adapter_config.json": new Uint8Array([123, 125]) } as never),
    isErr("ADAPTER_NOT_FOUND", "adapter_model.safetensors is missing"),
  );
  await assert.rejects(
    readAdapterFiles({ "adapter_config.json": "{}" as never, "adapter_model.safetensors": weights }),
    isErr("ADAPTER_NOT_FOUND", "adapter_config.json is not bytes, a Blob or a File"),
  );
  await assert.rejects(
    readAdapterFiles({ "adapter_config.json": new File(["{oops"], "cfg.json"), "adapter_model.safetensors": weights }),
    isErr("ADAPTER_BAD_CONFIG", "cfg.json: not valid JSON"),
  );
  await assert.rejects(
    readAdapterFiles({ "adapter_config.json": new Uint8Array([0xff, 0xfe, 0x00]), "adapter_model.safetensors": weights }),
    isErr("ADAPTER_BAD_CONFIG", "adapter_config.json: not UTF-8 text"),
  );
  await assert.rejects(
    readAdapterFiles({ "adapter_config.json": new TextEncoder().encode('{"peft_type":"LORA"}'), "adapter_model.safetensors": new File(["short"], "w.safetensors") }),
    isErr("SAFETENSORS_TRUNCATED", "w.safetensors"),
  );
});

Deno.test("byte inputs: training text gives the examples its file gives; a .jsonl name means JSONL", async () => {
  const tok = await Tokenizer.fromFile(STORIES);
  const dir = await Deno.makeTempDir({ prefix: "byte-data-" });
  try {
    const text = (await Deno.readTextFile(`${SHARED}data/tinyshakespeare.txt`)).slice(0, 2000);
    const jsonl = ['{"prompt": "Q: hi", "completion": " A: hello"}', '{"text": "Once upon a time there was a cat."}'].join("\n");
    await Deno.writeTextFile(`${dir}/t.txt`, text);
    await Deno.writeTextFile(`${dir}/d.jsonl`, jsonl);
    const o = { seqLen: 16, evalFraction: 0.2, seed: 1 };
    const a = await loadDataset(`${dir}/t.txt`, tok, o), b = await loadDataset({ text }, tok, o);
    assert.deepEqual(b.train, a.train);
    assert.deepEqual(b.eval, a.eval);
    assert.equal(b.stats.path, "<training text>");
    const j = await loadDataset({ text: jsonl, name: "pasted.jsonl" }, tok, { ...o, evalFraction: 0 });
    assert.equal(j.stats.format, "jsonl");
    assert.deepEqual(j.train, (await loadDataset(`${dir}/d.jsonl`, tok, { ...o, evalFraction: 0 })).train);
    await assert.rejects(loadDataset({ text: "  \n" }, tok, o), isErr("DATA_EMPTY", "<training text> is empty"));
    const binary = String.fromCharCode(...Array.from({ length: 200 }, (_, i) => i % 32));
    await assert.rejects(loadDataset({ text: binary, name: "model.bin" }, tok, o), isErr("DATA_NOT_TEXT", "model.bin looks binary"));
    await assert.rejects(loadDataset({ text: "Hi.", name: "tiny" }, tok, o), isErr("DATA_TOO_SHORT", "tiny is too short for seqLen 16"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
