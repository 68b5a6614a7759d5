/**
 * What PEFT's prompt-learning configs share (PromptLearningConfig): num_virtual_tokens and the
 * model sizes PEFT derives when it wraps a model (token_dim, num_layers, num_attention_heads,
 * num_transformer_submodules = 1 for a decoder-only model), written into adapter_config.json.
 * Loading a file whose sizes do not match the model is an error naming the key.
 */
import type { LlamaConfig } from "../model/config.ts";
import type { ConfigReader } from "./config_common.ts";

export interface PromptLearningKeys {
  num_virtual_tokens: number;
  token_dim: number | null;
  num_layers: number | null;
  num_attention_heads: number | null;
  num_transformer_submodules: number;
}

export const PROMPT_DEFAULTS = {
  num_virtual_tokens: null, token_dim: null, num_layers: null, num_attention_heads: null, num_transformer_submodules: null, modules_to_save: null,
};

/** Reads and checks the prompt-learning keys; `dims` are the model's (PEFT's derived values for it). */
export function promptKeys(c: ConfigReader, model: LlamaConfig | undefined, dims: (m: LlamaConfig) => { token_dim: number; num_attention_heads: number }): PromptLearningKeys {
  const n = c.u.num_virtual_tokens;
  if (!(Number.isInteger(n) && (n as number) >= 1)) c.bad("num_virtual_tokens", `must be a positive integer, got ${JSON.stringify(n)}`);
  if (model && (n as number) >= model.contextLength) {
    c.bad("num_virtual_tokens", `${n} virtual tokens leave no room in the model's context of ${model.contextLength} tokens`);
  }
  const sub = c.u.num_transformer_submodules ?? 1;
  if (sub !== 1) c.bad("num_transformer_submodules", `must be 1 for a decoder-only model, got ${JSON.stringify(sub)}`);
  if (!(c.u.modules_to_save === null || (Array.isArray(c.u.modules_to_save) && !c.u.modules_to_save.length))) {
    c.bad("modules_to_save", `is not supported with ${c.method} (got ${JSON.stringify(c.u.modules_to_save)})`);
  }
  const want = model ? { ...dims(model), num_layers: model.nLayers } : undefined;
  const out: Record<string, number | null> = {};
  for (const k of ["token_dim", "num_layers", "num_attention_heads"] as const) {
    const v = c.u[k];
    if (v !== null && v !== undefined && !(Number.isInteger(v) && (v as number) > 0)) c.bad(k, `must be a positive integer, got ${JSON.stringify(v)}`);
    if (want && v !== null && v !== undefined && v !== want[k]) {
      c.bad(k, `is ${v}, but this model has ${want[k]} (the adapter was made for another model)`);
    }
    out[k] = (v as number | null | undefined) ?? want?.[k] ?? null;
  }
  return { num_virtual_tokens: n as number, token_dim: out.token_dim, num_layers: out.num_layers, num_attention_heads: out.num_attention_heads, num_transformer_submodules: 1 };
}

/** PyTorch's nn.Linear default init, seeded: weight and bias ~ U(±1/√in). */
export function linearInit(next: () => number, outF: number, inF: number): { weight: Float32Array; bias: Float32Array } {
  const b = 1 / Math.sqrt(inF);
  const u = () => (2 * next() - 1) * b;
  return { weight: Float32Array.from({ length: outF * inF }, u), bias: Float32Array.from({ length: outF }, u) };
}
