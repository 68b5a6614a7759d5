/**
 * Model families: what differs between llama, mistral, qwen2 and phi3 as data the one block
 * (block.ts) reads, never as copies of it. A family names its GGUF `general.architecture`
 * values and HF `config.json` architectures, its rope layout, whether q/k/v carry biases,
 * whether q/k/v and gate/up are fused projections, and its block linears (PEFT's module names).
 *
 *   llama   (Llama 1-3.x, TinyLlama, SmolLM): rope in adjacent pairs with q/k rows permuted in
 *           GGUF (llama.cpp's converter), HF rows in rotate-half order; Llama 3.x rope scaling
 *           as per-pair frequency factors (rope_freqs.weight / rope_scaling type llama3).
 *   mistral the llama block plus a sliding attention window (llama.cpp's converter writes
 *           Mistral as GGUF `llama`; the window comes from `<arch>.attention.sliding_window`).
 *   qwen2   (Qwen2, Qwen2.5): q/k/v biases, NEOX rope (pairs i, i + d/2; rows not permuted in
 *           GGUF: llama.cpp runs qwen2 with LLAMA_ROPE_TYPE_NEOX), rope theta from the metadata.
 *   phi3    (Phi-3/3.5-mini, Phi-4-mini): one fused qkv projection (GGUF attn_qkv, HF qkv_proj)
 *           and one fused gate/up projection (GGUF ffn_up [2·ffn, dim], HF gate_up_proj: gate
 *           first), NEOX rope with optional partial rotation, sliding window from the config.
 */
import { PeftError } from "../../errors.ts";

export type FamilyName = "llama" | "mistral" | "qwen2" | "phi3";

export interface Family {
  name: FamilyName;
  /** GGUF general.architecture values this family reads (llama.cpp's names). */
  ggufArchitectures: readonly string[];
  /** The general.architecture llama.cpp runs the family as (what exports write: Mistral is llama there). */
  llamaCppArchitecture: string;
  /** HF config.json `architectures` entries and `model_type`. */
  hfArchitectures: readonly string[];
  hfModelType: string;
  /** "normal": adjacent pairs, q/k rows permuted between GGUF and HF; "neox": halves, rows identical in both. */
  rope: "normal" | "neox";
  /** q_proj/k_proj/v_proj have bias vectors (required by the family). */
  qkvBias: boolean;
  /** q/k/v are one qkv_proj and gate/up one gate_up_proj. */
  fused: boolean;
  /** The block linears by HF module name (PEFT's target names), in block order. */
  linears: readonly string[];
  /** PEFT's default LoRA target_modules for the model type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). */
  loraTargets: readonly string[];
  /** Llama 3.x rope frequency factors are allowed. */
  ropeFreqs: boolean;
}

const LLAMA_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;

export const FAMILIES: Readonly<Record<FamilyName, Family>> = {
  llama: {
    name: "llama", llamaCppArchitecture: "llama", ggufArchitectures: ["llama"], hfArchitectures: ["LlamaForCausalLM"], hfModelType: "llama",
    rope: "normal", qkvBias: false, fused: false, linears: LLAMA_LINEARS, loraTargets: ["q_proj", "v_proj"], ropeFreqs: true,
  },
  mistral: {
    name: "mistral", llamaCppArchitecture: "llama", ggufArchitectures: ["mistral"], hfArchitectures: ["MistralForCausalLM"], hfModelType: "mistral",
    rope: "normal", qkvBias: false, fused: false, linears: LLAMA_LINEARS, loraTargets: ["q_proj", "v_proj"], ropeFreqs: false,
  },
  qwen2: {
    name: "qwen2", llamaCppArchitecture: "qwen2", ggufArchitectures: ["qwen2"], hfArchitectures: ["Qwen2ForCausalLM"], hfModelType: "qwen2",
    rope: "neox", qkvBias: true, fused: false, linears: LLAMA_LINEARS, loraTargets: ["q_proj", "v_proj"], ropeFreqs: false,
  },
  phi3: {
    name: "phi3", llamaCppArchitecture: "phi3", ggufArchitectures: ["phi3"], hfArchitectures: ["Phi3ForCausalLM"], hfModelType: "phi3",
    rope: "neox", qkvBias: false, fused: true, linears: ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], loraTargets: ["qkv_proj"],
    ropeFreqs: false,
  },
};

/** "llama, mistral, qwen2, phi3" for messages. */
export const SUPPORTED_GGUF_ARCHITECTURES = [...new Set(Object.values(FAMILIES).flatMap((f) => f.ggufArchitectures))];
export const SUPPORTED_HF_ARCHITECTURES = Object.values(FAMILIES).flatMap((f) => f.hfArchitectures);
export const SUPPORTED_HF_MODEL_TYPES = Object.values(FAMILIES).map((f) => f.hfModelType);

/** The family of a GGUF general.architecture, or undefined. */
export function familyOfGguf(arch: string): Family | undefined {
  return Object.values(FAMILIES).find((f) => f.ggufArchitectures.includes(arch));
}

/** The family of an HF architectures entry or model_type, or undefined. */
export function familyOfHf(name: string): Family | undefined {
  return Object.values(FAMILIES).find((f) => f.hfArchitectures.includes(name) || f.hfModelType === name);
}

/** The family of a loaded model (its config's architecture). */
export function family(c: { architecture: string }): Family {
  const f = FAMILIES[c.architecture as FamilyName];
  if (!f) throw new PeftError("UNSUPPORTED_ARCH", `architecture ${c.architecture} is not supported (supported: ${Object.keys(FAMILIES).join(", ")})`);
  return f;
}
