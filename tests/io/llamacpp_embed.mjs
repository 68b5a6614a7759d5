/**
 * Runs GGUF files in llama.cpp (node-llama-cpp's prebuilt CPU binary, under Node) for
 * tests/io/ggml_gguf_llamacpp.test.ts: for each file, the greedy ids after a prompt and the
 * embedding of the prompt, one JSON line per file. Single-threaded, so runs are deterministic.
 *
 *   node tests/io/llamacpp_embed.mjs '{"files": ["a.gguf"], "prompt": [1, 50], "n": 16}'
 */
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const { files, prompt, n } = JSON.parse(process.argv[2]);
const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: LlamaLogLevel.error, maxThreads: 1 });
for (const path of files) {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const ctx = await model.createContext({ contextSize: 64, threads: 1, sequences: 1 });
  const ids = [];
  for await (const t of ctx.getSequence().evaluate(prompt, { temperature: 0 })) {
    ids.push(t);
    if (ids.length >= n) break;
  }
  await ctx.dispose();
  const embeddings = await model.createEmbeddingContext({ contextSize: 64, threads: 1 });
  const embedding = Array.from((await embeddings.getEmbeddingFor(prompt)).vector);
  await embeddings.dispose();
  await model.dispose();
  console.log(JSON.stringify({ path, ids, embedding }));
}
