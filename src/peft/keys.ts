/**
 * PEFT's on-disk tensor names for llama: "base_model.model." + the HF module path + "." + the
 * method's parameter name, e.g. base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight,
 * base_model.model.model.layers.3.mlp.down_proj.ia3_l, base_model.model.model.norm.ln_tuning_layers.weight.
 * Files written by other tools sometimes keep the adapter name (".default") or drop the
 * "base_model.model." prefix: `matchKeys` accepts both.
 */
import { PeftError } from "../errors.ts";
import { ALL_LINEAR_MODULES, HF_MODULE_PARENT } from "../model/config.ts";

export const PEFT_PREFIX = "base_model.model.";

/** HF module path of a block linear, e.g. model.layers.3.self_attn.q_proj. */
export function linearPath(layer: number, module: string): string {
  const parent = HF_MODULE_PARENT[module];
  if (!parent) throw new PeftError("UNKNOWN_MODULE", `unknown module ${module} (known: ${ALL_LINEAR_MODULES.join(", ")})`);
  return `model.layers.${layer}.${parent}.${module}`;
}

/** HF names of llama's RMSNorms -> GGUF weight names: input_layernorm, post_attention_layernorm, norm. */
export function normPath(ggufWeight: string): string {
  if (ggufWeight === "output_norm.weight") return "model.norm";
  const m = /^blk\.(\d+)\.(attn_norm|ffn_norm)\.weight$/.exec(ggufWeight);
  if (!m) throw new PeftError("UNKNOWN_MODULE", `${ggufWeight} is not a llama norm weight`);
  return `model.layers.${m[1]}.${m[2] === "attn_norm" ? "input_layernorm" : "post_attention_layernorm"}`;
}

export function peftKey(path: string, param: string): string {
  return `${PEFT_PREFIX}${path}.${param}`;
}

/**
 * Pairs the keys an adapter file holds with the keys a method expects. A file key matches an
 * expected key exactly, without the "base_model.model." prefix, or with one adapter-name segment
 * before the last one or two (".default", as PEFT keeps in memory), or with a trailing ".weight"
 * on a parameter PEFT saves without it. Returns the pairs and the file keys nothing expected.
 */
export function matchKeys(expected: string[], fileKeys: Iterable<string>): { found: Map<string, string>; unexpected: string[] } {
  const want = new Set(expected);
  const found = new Map<string, string>();
  const unexpected: string[] = [];
  for (const f of fileKeys) {
    const k = candidates(f).find((c) => want.has(c));
    if (k === undefined) unexpected.push(f);
    else if (found.has(k)) throw new PeftError("ADAPTER_BAD_TENSOR", `tensors ${found.get(k)} and ${f} are the same parameter ${k}`);
    else found.set(k, f);
  }
  return { found, unexpected };
}

function candidates(f: string): string[] {
  const withPrefix = f.startsWith(PEFT_PREFIX) ? [f] : [f, PEFT_PREFIX + f];
  const out: string[] = [];
  for (const k of withPrefix) {
    out.push(k);
    const parts = k.split(".");
    // "<param>.default.weight" -> "<param>.weight"; "<param>.default" -> "<param>"
    if (parts.length > 2) out.push([...parts.slice(0, -2), parts[parts.length - 1]].join("."));
    out.push(parts.slice(0, -1).join("."));
    if (parts.length > 3) out.push(parts.slice(0, -2).join("."));
  }
  return out;
}
