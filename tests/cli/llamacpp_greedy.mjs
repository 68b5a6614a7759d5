/**
 * Greedy ids from llama.cpp (node-llama-cpp's prebuilt CPU binary, under Node) for the export
 * tests: for each run, a model file and optionally a LoRA GGUF applied at runtime (llama.cpp's
 * llama_adapter_lora_init, what `llama-cli --lora` does), the ids generated after `prompt`.
 * EOS does not stop generation. Single-threaded, so runs are deterministic. One JSON line per run.
 *
 *   node tests/cli/llamacpp_greedy.mjs '{"runs": [{"model": "a.gguf", "lora": "l.gguf"}], "prompt": [1, 50], "n": 64}'
 */
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const { runs, prompt, n } = JSON.parse(process.argv[2]);
const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: LlamaLogLevel.error, maxThreads: 1 });
for (const run of runs) {
  const model = await llama.loadModel({ modelPath: run.model, gpuLayers: 0 });
  const ctx = await model.createContext({
    contextSize: prompt.length + n + 8, threads: 1, sequences: 1,
    ...(run.lora ? { lora: { adapters: [{ filePath: run.lora, scale: 1 }] } } : {}),
  });
  const ids = [];
  for await (const t of ctx.getSequence().evaluate(prompt, { temperature: 0 })) {
    ids.push(t);
    if (ids.length >= n) break;
  }
  await ctx.dispose();
  await model.dispose();
  console.log(JSON.stringify({ ...run, ids }));
}
await llama.dispose();
