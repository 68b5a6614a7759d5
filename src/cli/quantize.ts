/**
 * `quantize --model in.gguf --out out.safetensors --type nf4|fp4 [--blocksize 64] [--double-quant]`
 * Quantizes a llama GGUF's block linear weights to the bitsandbytes 4-bit safetensors layout
 * under Hugging Face names (q/k rows permuted back to HF's rotate-half order), and writes the
 * other tensors (embeddings, norms, head) as F32 under their HF names.
 */
import { parseArgs } from "node:util";
import { check, PeftError } from "../errors.ts";
import { readGGUF } from "../io/gguf.ts";
import { writeSafetensors, type SafetensorsWriteTensor } from "../io/safetensors.ts";
import { bnb4bitTensors } from "../io/bnb4bit.ts";
import { ggufLinearName, hfLinearName, LINEAR_MODULES, linearShape, permuteQK } from "../model/config.ts";
import { configFromGGUF } from "../model/weights.ts";
import { quantize4bit, type QuantType4 } from "../quant/mod.ts";

const USAGE = "usage: quantize --model in.gguf --out out.safetensors [--type nf4|fp4] [--blocksize 64] [--double-quant]";

export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      out: { type: "string" },
      type: { type: "string", default: "nf4" },
      blocksize: { type: "string", default: "64" },
      "double-quant": { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  check(values.model && values.out, "CLI_ARGS", `--model and --out are required\n${USAGE}`);
  check(values.type === "nf4" || values.type === "fp4", "CLI_ARGS", `--type ${values.type} must be nf4 or fp4`);
  const type = values.type as QuantType4;
  const blocksize = Number(values.blocksize);
  const doubleQuant = values["double-quant"]!;

  const g = await readGGUF(values.model!);
  const cfg = configFromGGUF(g);
  const tensors: SafetensorsWriteTensor[] = [];
  let params = 0, bytes = 0;
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
    for (const mod of LINEAR_MODULES) {
      const ggufName = ggufLinearName(mod, l);
      const shape = linearShape(cfg, mod);
      const info = g.tensors.get(ggufName);
      if (!info) throw new PeftError("GGUF_MISSING_TENSOR", `${values.model}: missing tensor ${ggufName}`);
      check(info.shape[0] === shape[0] && info.shape[1] === shape[1], "GGUF_SHAPE_MISMATCH", `${values.model}: ${ggufName} is [${info.shape}], expected [${shape}]`);
      let w = await g.readF32(ggufName);
      if (mod === "q_proj" || mod === "k_proj") w = permuteQK(w, shape[0], shape[1], cfg.headDim, "gguf_to_hf");
      const name = hfLinearName(mod, l);
      const st = quantize4bit(w, { type, blocksize, doubleQuant, name: `${values.model}: ${ggufName}`, shape });
      const entries = bnb4bitTensors(name, st);
      tensors.push(...entries);
      params += st.n;
      bytes += entries.filter((e) => !e.name.includes(".quant_state.")).reduce((a, e) => a + e.data.byteLength, 0);
    }
  }
  await writeSafetensors(values.out!, tensors);
  console.log(
    `quantized ${cfg.nLayers * LINEAR_MODULES.length} linear weights (${params} params) to ${type}` +
      `${doubleQuant ? " + double quant" : ""}, blocksize ${blocksize}: ${((bytes * 8) / params).toFixed(3)} bits/param -> ${values.out}`,
  );
}
