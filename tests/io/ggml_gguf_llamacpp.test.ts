/**
 * GGUF files with our quantized tensors, run by llama.cpp itself (node-llama-cpp's prebuilt CPU
 * binary under Node, tests/io/llamacpp_embed.mjs), for every type: a random llama (dim 256, one
 * layer, ffn 256, the stories260K tokenizer) written by our writer
 *   - with token_embd in the type, and with token_embd as the f32 values of our dequantizer:
 *     llama.cpp's prompt embedding and greedy ids are identical (its row lookup dequantizes,
 *     everything after is the same f32 math), and differ from the unquantized model's;
 *   - with every matrix in the type, and with every matrix as our dequantized f32: llama.cpp
 *     loads and runs it and the embeddings agree within 2% (llama.cpp's quantized matmuls round the
 *     activations to 8 bits: 0.3–1% measured; the quantization itself moves them 3–13% for the
 *     4–6-bit types, and a misplaced block would move them by their whole size).
 * And our runtime on the same kind of files, every matrix kept in its type on the GPU: stories260K
 * widened to rows of 256 (tests/ggml/helpers.ts, a trained model, so greedy choices have margins
 * that llama.cpp's 8-bit rounding of activations does not flip) in each type gives llama.cpp's
 * greedy ids.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { dequantizeGgml, GGML } from "../../src/io/ggml_quants.ts";
import { quantizeGgml } from "../../src/io/ggml_quantize.ts";
import { type GgufWriteTensor, readGGUF, writeGGUF } from "../../src/io/gguf.ts";
import { randomLlamaGguf } from "../qlora/helpers.ts";
import { quantizedStories } from "../ggml/helpers.ts";
import { loadModel } from "../../src/api/model.ts";
import { generateTokens, type GenerationTokenizer } from "../../src/infer/generate.ts";
import { testGpu } from "../helpers.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const available = existsSync(join(root, "node_modules/node-llama-cpp")) && Deno.build.os === "linux" && Deno.build.arch === "x86_64";
const TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "BF16"] as const;

interface Run {
  path: string;
  ids: number[];
  embedding: number[];
}

function llamaCpp(files: string[], prompt = [1, 50, 60, 70, 80, 90], n = 16): Run[] {
  const input = JSON.stringify({ files, prompt, n });
  const r = spawnSync("node", ["tests/io/llamacpp_embed.mjs", input], { cwd: root, encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, `llama.cpp run failed: ${r.stderr}`);
  return r.stdout.trim().split("\n").map((l) => JSON.parse(l));
}

const maxRelDiff = (a: number[], b: number[]) => {
  let d = 0, s = 0;
  for (let i = 0; i < b.length; i++) (d = Math.max(d, Math.abs(a[i] - b[i]))), (s = Math.max(s, Math.abs(b[i])));
  return d / s;
};

Deno.test({
  name: "llama.cpp runs GGUF files with our quantized tensors of every type as their dequantized f32 values",
  ignore: !available,
  async fn() {
    const base = await randomLlamaGguf({ dim: 256, nLayers: 1, hiddenDim: 256, nHeads: 4, nKvHeads: 4, vocabSize: 512, seed: 3 });
    const dir = await mkdtemp(join(tmpdir(), "ggml-llamacpp-"));
    try {
      const g = await readGGUF(base);
      const tensors: GgufWriteTensor[] = [];
      for (const t of g.tensors.values()) tensors.push({ name: t.name, shape: t.shape, data: await g.readF32(t.name) });
      await g.close();
      const files = [base];
      for (const name of TYPES) {
        const type = GGML[name];
        const quantize = (t: GgufWriteTensor) => ({ ...t, data: quantizeGgml(type, t.data as Float32Array, t.shape[1], t.name), ggmlType: type });
        const dequantize = (t: GgufWriteTensor) => ({ name: t.name, shape: t.shape, data: dequantizeGgml(type, t.data as Uint8Array, t.shape[0] * t.shape[1]) });
        const embQ = tensors.map((t) => (t.name === "token_embd.weight" ? quantize(t) : t));
        const allQ = tensors.map((t) => (t.shape.length === 2 ? quantize(t) : t));
        const variants = { embQ, embDeq: embQ.map((t) => (t.ggmlType ? dequantize(t) : t)), allQ, allDeq: allQ.map((t) => (t.ggmlType ? dequantize(t) : t)) };
        for (const [k, ts] of Object.entries(variants)) {
          const path = join(dir, `${name}-${k}.gguf`);
          await writeGGUF(path, { metadata: g.metadata, tensors: ts });
          files.push(path);
        }
      }
      const [f32, ...runs] = llamaCpp(files);
      TYPES.forEach((name, i) => {
        const [embQ, embDeq, allQ, allDeq] = runs.slice(4 * i, 4 * i + 4);
        assert.deepEqual(embQ.embedding, embDeq.embedding, `${name} token_embd: embedding`);
        assert.deepEqual(embQ.ids, embDeq.ids, `${name} token_embd: greedy ids`);
        assert.notDeepEqual(embQ.embedding, f32.embedding, `${name} token_embd: quantizing changed nothing?`);
        assert.equal(allQ.ids.length, 16, `${name}: all matrices quantized, 16 tokens`);
        const d = maxRelDiff(allQ.embedding, allDeq.embedding);
        assert.ok(d < 0.02, `${name}: all matrices quantized, embedding ${d} away from the dequantized f32 model's`);
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
      await rm(dirname(base), { recursive: true, force: true });
    }
  },
});

Deno.test({
  name: "our greedy ids on GGUF files of every type, kept quantized on the GPU, equal llama.cpp's",
  ignore: !available,
  async fn() {
    const dir = await mkdtemp(join(tmpdir(), "ggml-greedy-"));
    // 20 tokens: our top-two logit margins over them are >= 0.10 for every type, while llama.cpp's
    // 8-bit activations move its logits by up to ~0.07 here (its first flips come at tokens 23-24).
    const N = 20;
    try {
      const files: string[] = [];
      for (const name of TYPES) files.push(await quantizedStories(GGML[name], dir));
      const gpu = await testGpu();
      const first = await loadModel(files[0], { gpu });
      const prompt = first.encodePrompt("Once upon a time");
      first.close();
      const runs = llamaCpp(files, prompt, N);
      for (const [i, name] of TYPES.entries()) {
        const model = await loadModel(files[i], { gpu });
        try {
          const kept = model.parameterReport();
          assert.deepEqual(Object.keys(kept.ggmlTypes), [name], `${name}: every matrix stays ${name} on the GPU`);
          assert.equal(kept.f32Params, 256 * 11, `${name}: only the norms are f32`);
          // EOS ignored: N tokens as llama.cpp's evaluate loop gives them.
          const tok: GenerationTokenizer = { encode: () => [], createStreamDecoder: () => model.tokenizer.createStreamDecoder(), eosId: -1 };
          const ids: number[] = [];
          for await (const piece of generateTokens(model.llama, tok, prompt, { maxTokens: N, temperature: 0 })) ids.push(piece.id);
          console.log(`  ${name.padEnd(4)} ${JSON.stringify(model.tokenizer.decode(ids))}`);
          assert.deepEqual(ids, runs[i].ids, `${name}: greedy ids`);
        } finally {
          model.close();
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
});
