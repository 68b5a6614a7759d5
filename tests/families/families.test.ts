/**
 * Model families (issue 13 part 1): for each family's tiny random model, written as a GGUF with
 * llama.cpp's names and metadata and as an HF directory, our logits equal an independent
 * PyTorch implementation of the family (scripts/dev/make_family_fixtures.py) within 1e-4 — on
 * the CPU reference and the GPU, from both files — the GGUF and HF loads agree, and decoding
 * from the KV cache (sliding window included) equals the full pass.
 */
import assert from "node:assert/strict";
import { llamaReferenceLogits } from "../../src/model/llama_reference.ts";
import { LlamaGpu } from "../../src/model/llama.ts";
import { hfWeights, writeHfDirectory } from "../../src/model/hf_weights.ts";
import { readSafetensors } from "../../src/io/safetensors.ts";
import { ggufWeights, type WeightSource } from "../../src/model/weights.ts";
import { type LlamaConfig, permuteQK } from "../../src/model/config.ts";
import { isErr, maxAbsDiff, testGpu } from "../helpers.ts";
import { FAMILY_SPECS, familyModel } from "./fixtures.ts";

async function hostWeights(src: WeightSource): Promise<Map<string, Float32Array>> {
  const w = new Map<string, Float32Array>();
  for (const n of src.names()) if (n !== "rope_freqs.weight") w.set(n, await src.readF32(n));
  return w;
}

type Weights = Map<string, Float32Array>;
/** Each model without its family's difference: the logits must then miss PyTorch's (the check sees the difference). */
const CONTROLS: Record<string, (c: LlamaConfig, w: Weights) => [LlamaConfig, Weights]> = {
  // q/k rows left in HF order (no GGUF permutation)
  llama: (c, w) => [c, new Map([...w].map(([n, d]) => [n, /attn_[qk]\.weight$/.test(n) ? permuteQK(d, d.length / c.dim, c.dim, c.headDim, "gguf_to_hf") : d]))],
  llama3: (c, w) => [{ ...c, ropeFreqFactors: undefined }, w],
  mistral: (c, w) => [{ ...c, slidingWindow: 0 }, w],
  qwen2: (c, w) => [c, new Map([...w].map(([n, d]) => [n, n.endsWith(".bias") ? new Float32Array(d.length) : d]))],
  phi3: (c, w) => [{ ...c, ropeDim: c.headDim }, w],
};

for (const spec of FAMILY_SPECS) {
  Deno.test(`family ${spec.name}: GGUF and HF loads give PyTorch's logits within 1e-4 (CPU reference and GPU), the same config and tensors`, async () => {
    const m = await familyModel(spec.name);
    const gguf = await ggufWeights(m.gguf), hf = await hfWeights(m.hf);
    try {
      // llama.cpp's converter writes Mistral as GGUF llama (with the window key here).
      assert.equal(gguf.config.architecture, spec.family === "mistral" ? "llama" : spec.family);
      assert.equal(hf.config.architecture, spec.family);
      // Same hyper-parameters either way (eps: f32 in GGUF; rope factors: rope_freqs.weight vs computed from rope_scaling).
      const { ropeScaling: _s, architecture: _a, normEps: e1, ...hfc } = hf.config;
      const { architecture: _b, normEps: e2, ...ggc } = gguf.config;
      assert.deepEqual(hfc, ggc);
      assert.equal(Math.fround(e1), e2);
      assert.equal(gguf.config.slidingWindow, spec.slidingWindow);
      assert.equal(!!gguf.config.ropeFreqFactors, !!spec.llama3);
      const ids = m.prompts[0], V = spec.vocab;
      const wG = await hostWeights(gguf), wH = await hostWeights(hf);
      assert.deepEqual([...wH.keys()].sort(), [...wG.keys()].sort());
      for (const [n, d] of wG) assert.deepEqual(wH.get(n), d, `tensor ${n}: GGUF and HF (after the family's q/k convention) differ`);

      const cpu = (cfg: LlamaConfig, w: Weights) => Float32Array.from(llamaReferenceLogits(cfg, w, ids).flatMap((r) => [...r]));
      for (const [what, cfg, w] of [["GGUF", gguf.config, wG], ["HF", hf.config, wH]] as const) {
        const d = maxAbsDiff(cpu(cfg, w), m.logits[0]);
        assert.ok(d < 1e-4, `${what} CPU reference vs PyTorch: max abs logit diff ${d}`);
      }
      const off = maxAbsDiff(cpu(...CONTROLS[spec.name](gguf.config, wG)), m.logits[0]);
      assert.ok(off > 1e-2, `without the family's difference the logits still match (max diff ${off})`);
      const gpu = await testGpu();
      const got: Float32Array[] = [];
      for (const src of [gguf, hf]) {
        const llama = await LlamaGpu.load(gpu, src);
        const t = llama.forward(ids, 0, { allLogits: true });
        got.push(await gpu.readF32(t));
        t.release();
        llama.destroy();
      }
      const d = maxAbsDiff(got[0], m.logits[0]);
      assert.ok(d < 1e-4, `GPU (GGUF) vs PyTorch: max abs logit diff ${d}`);
      assert.ok(maxAbsDiff(got[1], got[0]) < 1e-6, "GPU logits from the HF directory equal those from the GGUF");
      assert.equal(m.logits[0].length, ids.length * V);
    } finally {
      await gguf.close();
      await hf.close();
    }
  });
}

Deno.test("families: decoding from the KV cache (one token at a time after a prefill) equals the full pass, sliding windows included", async () => {
  const gpu = await testGpu();
  for (const name of ["mistral", "qwen2", "phi3", "llama3"]) {
    const m = await familyModel(name);
    const src = await ggufWeights(m.gguf);
    const llama = await LlamaGpu.load(gpu, src);
    await src.close();
    const ids = m.prompts[0], V = m.spec.vocab, split = 3;
    llama.forward(ids.slice(0, split), 0).release();
    let max = 0;
    for (let p = split; p < ids.length; p++) {
      const t = llama.forward([ids[p]], p);
      max = Math.max(max, maxAbsDiff(await gpu.readF32(t), m.logits[0].subarray(p * V, (p + 1) * V)));
      t.release();
    }
    llama.destroy();
    assert.ok(max < 1e-4, `${name}: decode vs PyTorch max abs logit diff ${max}`);
  }
});

Deno.test("families: HF export (writeHfDirectory, behind saveHf) writes each family as transformers names it — qwen2's biases, phi3's fused tensors, q/k rows back in HF order, Llama 3's rope_scaling — the same tensors as the HF source", async () => {
  const out = await Deno.makeTempDir();
  try {
    for (const spec of FAMILY_SPECS) {
      const m = await familyModel(spec.name);
      const src = await hfWeights(m.hf), gg = await ggufWeights(m.gguf);
      try {
        const dst = `${out}/${spec.name}`;
        if (spec.llama3) {
          // From the GGUF only the factors are known, not the rope_scaling parameters they came from.
          await assert.rejects(writeHfDirectory(`${dst}-gguf`, gg), isErr("HF_UNSUPPORTED", "rope_freqs.weight", "rope_scaling"));
        } else {
          await writeHfDirectory(`${dst}-gguf`, gg);
        }
        await writeHfDirectory(dst, src);
        const cfg = JSON.parse(await Deno.readTextFile(`${dst}/config.json`));
        const want = JSON.parse(await Deno.readTextFile(`${m.hf}/config.json`));
        assert.deepEqual(cfg.architectures, want.architectures);
        assert.deepEqual(cfg.rope_scaling ?? null, want.rope_scaling ?? null);
        assert.equal(cfg.sliding_window ?? null, spec.family === "qwen2" ? null : want.sliding_window ?? null);
        const a = await readSafetensors(`${dst}/model.safetensors`), b = await readSafetensors(`${m.hf}/model.safetensors`);
        assert.deepEqual([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
        for (const n of b.tensors.keys()) assert.deepEqual(await a.readF32(n), await b.readF32(n), `${spec.name}: ${n}`);
        for (const d of spec.llama3 ? [] : [`${dst}-gguf`]) {
          const c = await readSafetensors(`${d}/model.safetensors`);
          for (const n of b.tensors.keys()) assert.deepEqual(await c.readF32(n), await b.readF32(n), `${spec.name} from GGUF: ${n}`);
          await c.close();
        }
        await a.close();
        await b.close();
      } finally {
        await src.close();
        await gg.close();
      }
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
