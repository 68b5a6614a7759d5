/**
 * llama's RMSNorms as PEFT names them — model.layers.{i}.input_layernorm,
 * model.layers.{i}.post_attention_layernorm, model.norm — chosen by target_modules as PEFT
 * chooses modules (a list: equal or ends with "." + name; a string: a regex that must match
 * the whole key), with their GGUF weight names.
 */
import { PeftError } from "../errors.ts";
import type { LlamaConfig } from "../model/config.ts";
import { normPath } from "./keys.ts";

export interface NormTarget {
  /** GGUF weight name, e.g. blk.0.attn_norm.weight. */
  weight: string;
  /** HF module key, e.g. model.layers.0.input_layernorm. */
  path: string;
}

export const NORM_MODULES = ["input_layernorm", "post_attention_layernorm", "norm"];

export function allNorms(model: LlamaConfig): NormTarget[] {
  const out: NormTarget[] = [];
  for (let l = 0; l < model.nLayers; l++) {
    for (const n of ["attn_norm", "ffn_norm"]) out.push({ weight: `blk.${l}.${n}.weight`, path: normPath(`blk.${l}.${n}.weight`) });
  }
  out.push({ weight: "output_norm.weight", path: normPath("output_norm.weight") });
  return out;
}

/** The norms `target_modules` selects (in layer order, the final norm last); `label` names the method in errors. */
export function resolveNorms(targets: string[] | string, model: LlamaConfig, label: { name: string; code: string }, layers: number[] | null = null): NormTarget[] {
  const all = allNorms(model).filter((n) => {
    if (!layers) return true;
    const m = /^blk\.(\d+)\./.exec(n.weight);
    return m !== null && layers.includes(Number(m[1]));
  });
  let match: (key: string) => boolean;
  if (typeof targets === "string") {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${targets})$`);
    } catch (e) {
      throw new PeftError(`${label.code}_CONFIG`, `${label.name} config: target_modules regex ${JSON.stringify(targets)} is invalid: ${(e as Error).message}`);
    }
    match = (k) => re.test(k);
  } else {
    match = (k) => targets.some((t) => k === t || k.endsWith(`.${t}`));
  }
  const out = all.filter((n) => match(n.path));
  if (!out.length) {
    throw new PeftError(`${label.code}_NO_TARGET`, `${label.name} target_modules ${JSON.stringify(targets)} matched no norm of this model (norm modules: ${NORM_MODULES.join(", ")})`);
  }
  return out;
}
