/**
 * `quantize --model in.gguf --out out.safetensors --type nf4|fp4 [--blocksize 64] [--double-quant]`
 * Quantizes a llama GGUF's block linear weights to the bitsandbytes 4-bit safetensors layout
 * under Hugging Face names (q/k rows permuted back to HF's rotate-half order), and writes the
 * other tensors (embeddings, norms, head) as F32 under their HF names.
 */
import { check, PeftError } from "../errors.ts";
import { readGGUF } from "../io/gguf.ts";
import { writeSafetensors, type SafetensorsWriteTensor } from "../io/safetensors.ts";
import { bnb4bitTensors } from "../io/bnb4bit.ts";
import { biasName, ggufLinearName, hfLinearName, linearModules, linearShape, reorderQK } from "../model/config.ts";
import { configFromGGUF } from "../model/weights.ts";
import { fourBitPayload, quantize4bit } from "../quant/mod.ts";
import { type Command, parseFlags } from "./flags.ts";

export const QUANTIZE = {
  name: "quantize",
  summary: "write a GGUF model's block linears as bitsandbytes 4-bit safetensors (NF4/FP4, HF names), the rest as F32",
  usage: "--model in.gguf --out out.safetensors [flags]",
  flags: {
    model: { type: "string", required: true, value: "<in.gguf>", description: "llama-family GGUF file to quantize" },
    out: { type: "string", required: true, value: "<out.safetensors>", description: "safetensors file to write (atomically)" },
    type: { type: "string", choices: ["nf4", "fp4"], default: "nf4", description: "4-bit code: NF4 (normal float, QLoRA's) or FP4" },
    blocksize: { type: "int", default: 64, min: 32, max: 4096, units: "values per scale", description: "how many weights share one block scale (a power of two, 32 to 4096)" },
    "double-quant": { type: "boolean", description: "store the block scales as 8-bit codes too (bitsandbytes' compress_statistics)" },
  },
  notes: [
    "bits/param: the codes and block scales of the weights, as the GPU holds them; the file adds each",
    "weight's own copy of the code map (64 bytes, plus 1 KiB for double quant), which dominates on tiny tensors.",
  ],
} as const satisfies Command;

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(QUANTIZE, args);
  if (!f) return;
  const values = f.values;
  const type = values.type as "nf4" | "fp4";
  const blocksize = values.blocksize;
  const doubleQuant = values["double-quant"];

  const g = await readGGUF(values.model);
  const cfg = configFromGGUF(g);
  const tensors: SafetensorsWriteTensor[] = [];
  let params = 0, bytes = 0, payload = 0;
  const plain = async (gguf: string, hf: string) => {
    const data = await g.readF32(gguf);
    tensors.push({ name: hf, dtype: "F32", shape: g.tensors.get(gguf)!.shape, data });
  };
  await plain("token_embd.weight", "model.embed_tokens.weight");
  await plain("output_norm.weight", "model.norm.weight");
  if (g.tensors.has("output.weight")) await plain("output.weight", "lm_head.weight");
  for (let l = 0; l < cfg.nLayers; l++) {
    await plain(`blk.${l}.attn_norm.weight`, `model.layers.${l}.input_layernorm.weight`);
    await plain(`blk.${l}.ffn_norm.weight`, `model.layers.${l}.post_attention_layernorm.weight`);
    for (const mod of linearModules(cfg)) {
      const bias = biasName(cfg, mod, l);
      if (bias) await plain(bias, hfLinearName(mod, l).replace(/\.weight$/, ".bias"));
      const ggufName = ggufLinearName(mod, l);
      const shape = linearShape(cfg, mod);
      const info = g.tensors.get(ggufName);
      if (!info) throw new PeftError("GGUF_MISSING_TENSOR", `${values.model}: missing tensor ${ggufName}`);
      check(info.shape[0] === shape[0] && info.shape[1] === shape[1], "GGUF_SHAPE_MISMATCH", `${values.model}: ${ggufName} is [${info.shape}], expected [${shape}]`);
      let w = await g.readF32(ggufName);
      if (mod === "q_proj" || mod === "k_proj") w = reorderQK(cfg, w, shape[0], shape[1], "gguf_to_hf");
      const name = hfLinearName(mod, l);
      const st = quantize4bit(w, { type, blocksize, doubleQuant, name: `${values.model}: ${ggufName}`, shape });
      const entries = bnb4bitTensors(name, st);
      tensors.push(...entries);
      params += st.n;
      bytes += entries.filter((e) => !e.name.includes(".quant_state.")).reduce((a, e) => a + e.data.byteLength, 0);
      const p = fourBitPayload(st.n, { blocksize, doubleQuant });
      payload += p.codes + p.scales;
    }
  }
  await writeSafetensors(values.out, tensors);
  console.log(
    `quantized ${cfg.nLayers * linearModules(cfg).length} linear weights (${params} params) to ${type}` +
      `${doubleQuant ? " + double quant" : ""}, blocksize ${blocksize}: ${((payload * 8) / params).toFixed(3)} bits/param in codes and block scales; ` +
      `${((bytes * 8) / params).toFixed(3)} in the file, which repeats the code map${doubleQuant ? "s" : ""} beside every weight -> ${values.out}`,
  );
}
