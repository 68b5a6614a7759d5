/**
 * Prompt tuning (Lester et al. 2021), as PEFT's PROMPT_TUNING: num_virtual_tokens learned
 * embeddings [P, dim] before every sequence's token embeddings. As PEFT + transformers run it,
 * the virtual tokens take positions 0..P-1 and the text follows at P.., and the loss never falls
 * on them. Init as PEFT: RANDOM (N(0, 1), nn.Embedding's default), SAMPLE_VOCAB (rows of the
 * embedding table at seeded random ids) or TEXT (the embeddings of prompt_tuning_init_text's
 * tokens, BOS included as HF tokenizers add it, repeated to num_virtual_tokens; a text of more
 * tokens than that is refused here, where PEFT would cut it). On disk: prompt_embeddings [P, dim].
 */
import { PeftError } from "../../errors.ts";
import type { Backend } from "../../model/backend.ts";
import type { LlamaConfig } from "../../model/config.ts";
import type { Hooks } from "../../model/sites.ts";
import { Rng } from "../../util/rng.ts";
import { ConfigReader } from "../config_common.ts";
import type { InitContext, MethodConfig, ParamLayout, ParamStore, PeftMethod } from "../method.ts";
import { PROMPT_DEFAULTS, type PromptLearningKeys, promptKeys } from "../prompt_common.ts";

export interface PromptTuningConfig extends MethodConfig, PromptLearningKeys {
  peft_type: "PROMPT_TUNING";
  prompt_tuning_init: "RANDOM" | "SAMPLE_VOCAB" | "TEXT";
  prompt_tuning_init_text: string | null;
  tokenizer_name_or_path: string | null;
}

export const PROMPT_KEY = "prompt_embeddings";

/** Virtual tokens are inputs, not deltas: a combination weight other than 1 means nothing for them. */
export function noWeight(method: string, weight: number): void {
  if (weight !== 1) throw new PeftError("UNSUPPORTED", `${method} adds virtual tokens and cannot be combined with a weight other than 1 (got ${weight})`);
}

/** The embedding-prefix hooks both prompt tuning and P-tuning's saved form run with. */
export function promptHooks<T>(P: number, embeddings: ParamStore<T>, key = PROMPT_KEY): Hooks<T> {
  return { linear: () => [], norm: () => undefined, virtualTokens: P, embedPrefix: (g) => g.param(embeddings.get(key)) };
}

export function normalizePromptTuningConfig(user: Record<string, unknown>, model?: LlamaConfig): PromptTuningConfig {
  const c = new ConfigReader("prompt tuning", "PROMPT_TUNING_CONFIG", "PROMPT_TUNING", user, {
    ...PROMPT_DEFAULTS, prompt_tuning_init: "RANDOM", prompt_tuning_init_text: null, tokenizer_name_or_path: null, tokenizer_kwargs: null,
  });
  const keys = promptKeys(c, model, (m) => ({ token_dim: m.dim, num_attention_heads: m.nHeads }));
  const init = c.u.prompt_tuning_init;
  if (init !== "RANDOM" && init !== "SAMPLE_VOCAB" && init !== "TEXT") c.bad("prompt_tuning_init", `must be "RANDOM", "SAMPLE_VOCAB" or "TEXT", got ${JSON.stringify(init)}`);
  const text = c.u.prompt_tuning_init_text;
  if (init === "TEXT" && (typeof text !== "string" || !text)) c.bad("prompt_tuning_init_text", `must be a non-empty string with prompt_tuning_init "TEXT", got ${JSON.stringify(text)}`);
  if (text !== null && typeof text !== "string") c.bad("prompt_tuning_init_text", `must be a string, got ${JSON.stringify(text)}`);
  c.know("tokenizer_kwargs");
  return {
    ...c.extras(), ...c.common(), ...keys, peft_type: "PROMPT_TUNING", prompt_tuning_init: init as PromptTuningConfig["prompt_tuning_init"],
    prompt_tuning_init_text: text as string | null, tokenizer_name_or_path: (c.u.tokenizer_name_or_path as string | null) ?? null, modules_to_save: null,
  };
}

export const PROMPT_TUNING: PeftMethod<PromptTuningConfig> = {
  peftType: "PROMPT_TUNING",
  normalize: normalizePromptTuningConfig,
  label: () => "Prompt tuning",
  describe: (c) => `prompt tuning, ${c.num_virtual_tokens} virtual tokens (init ${c.prompt_tuning_init})`,
  layout: (c, model): ParamLayout[] => [{ key: PROMPT_KEY, shape: [c.num_virtual_tokens, model.dim] }],
  init(c, model, seed) {
    const rng = new Rng(seed);
    const v = new Float32Array(c.num_virtual_tokens * model.dim);
    if (c.prompt_tuning_init === "RANDOM") for (let i = 0; i < v.length; i++) v[i] = rng.normal(0, 1);
    return new Map([[PROMPT_KEY, v]]);
  },
  initFromBase<T>(c: PromptTuningConfig, model: LlamaConfig, be: Backend<T>, params: ParamStore<T>, ctx: InitContext): void {
    if (c.prompt_tuning_init === "RANDOM" || c.inference_mode) return;
    const P = c.num_virtual_tokens;
    let ids: number[];
    if (c.prompt_tuning_init === "TEXT") {
      if (!ctx.tokenize) throw new PeftError("UNSUPPORTED", "prompt_tuning_init TEXT needs the model's tokenizer (add the adapter through a loaded model)");
      const text = ctx.tokenize(c.prompt_tuning_init_text!);
      if (text.length > P) {
        throw new PeftError("PROMPT_TUNING_CONFIG", `prompt tuning config: prompt_tuning_init_text is ${text.length} tokens, more than num_virtual_tokens ${P}`);
      }
      ids = Array.from({ length: P }, (_, i) => text[i % text.length]);
    } else {
      const rng = new Rng((ctx.seed ?? 0) + 1);
      ids = Array.from({ length: P }, () => rng.int(model.vocabSize));
    }
    const idT = be.ids(ids);
    const rows = be.baseEmbedding("token_embd.weight", idT);
    be.copyInto(params.get(PROMPT_KEY).value, rows);
    be.release(rows);
    be.release(idT);
  },
  hooks(c, _model, params, weight) {
    noWeight("prompt tuning", weight);
    return promptHooks(c.num_virtual_tokens, params);
  },
  cannotMerge: "virtual tokens are inputs, not weights",
};
