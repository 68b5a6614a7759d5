/**
 * Prefix tuning (Li & Liang 2021; P-tuning v2 is the same deep prompt), as PEFT's PREFIX_TUNING:
 * num_virtual_tokens learned key and value rows before every sequence in every layer's attention.
 * The prefix is one tensor [P, num_layers·2·token_dim], each row laid out as PEFT views it:
 * (layer, key|value, kv head, head dim); token_dim = head_dim · num_key_value_heads (PEFT's
 * grouped-query sizing). With prefix_projection, training learns an embedding [P, token_dim] and
 * PEFT's Linear·Tanh·Linear (encoder_hidden_size) that produce it; the directory holds the
 * projected prefix as prompt_embeddings with inference_mode true, as PEFT saves it.
 * As PEFT + transformers run it, the prefix keys are used as given (never rotated) and the text
 * takes positions P.., after the prefix. Keys are kept in GGUF's head-dim order in memory and
 * written in HF's order (each key head's dims permuted like q/k weight rows).
 */
import type { Backend } from "../../model/backend.ts";
import { type LlamaConfig, reorderQK } from "../../model/config.ts";
import { Graph, type V } from "../../model/graph.ts";
import type { Hooks } from "../../model/sites.ts";
import { Rng } from "../../util/rng.ts";
import { ConfigReader } from "../config_common.ts";
import type { MethodConfig, ParamLayout, ParamStore, PeftMethod } from "../method.ts";
import { linearInit, PROMPT_DEFAULTS, type PromptLearningKeys, promptKeys } from "../prompt_common.ts";
import { noWeight, PROMPT_KEY } from "../prompt_tuning/method.ts";

export interface PrefixTuningConfig extends MethodConfig, PromptLearningKeys {
  peft_type: "PREFIX_TUNING";
  prefix_projection: boolean;
  encoder_hidden_size: number | null;
  init_weights: "zero" | null;
}

/** PEFT's sizes for llama: token_dim and num_attention_heads follow the key/value heads. */
const kvDims = (m: LlamaConfig) => ({ token_dim: m.headDim * m.nKvHeads, num_attention_heads: m.nKvHeads });

export function normalizePrefixTuningConfig(user: Record<string, unknown>, model?: LlamaConfig): PrefixTuningConfig {
  const c = new ConfigReader("prefix tuning", "PREFIX_TUNING_CONFIG", "PREFIX_TUNING", user, {
    ...PROMPT_DEFAULTS, prefix_projection: false, encoder_hidden_size: null, init_weights: null,
  });
  const keys = promptKeys(c, model, kvDims);
  const projection = c.bool("prefix_projection");
  const hidden = c.u.encoder_hidden_size ?? keys.token_dim;
  if (hidden !== null && !(Number.isInteger(hidden) && (hidden as number) > 0)) c.bad("encoder_hidden_size", `must be a positive integer, got ${JSON.stringify(hidden)}`);
  const init = c.u.init_weights;
  if (init !== null && init !== "zero") c.bad("init_weights", `must be null or "zero", got ${JSON.stringify(init)}`);
  return {
    ...c.extras(), ...c.common(), ...keys, peft_type: "PREFIX_TUNING", prefix_projection: projection, encoder_hidden_size: hidden as number | null,
    init_weights: init as "zero" | null, modules_to_save: null,
  };
}

const E = "prompt_encoder.";
/** Training with a projection learns these; otherwise the prefix itself is the parameter. */
const projected = (c: PrefixTuningConfig) => c.prefix_projection && !c.inference_mode;

function width(model: LlamaConfig): number {
  return model.nLayers * 2 * model.nKvHeads * model.headDim;
}

/** GGUF <-> HF order of the key heads' dims inside each [P, layers·2·kvDim] row (values untouched). */
function prefixReorder(model: LlamaConfig) {
  const kvDim = model.nKvHeads * model.headDim, W = width(model);
  return (data: Float32Array, direction: "hf_to_gguf" | "gguf_to_hf"): Float32Array => {
    const out = data.slice();
    const P = data.length / W;
    for (let p = 0; p < P; p++) {
      for (let l = 0; l < model.nLayers; l++) {
        const off = p * W + 2 * l * kvDim; // this layer's key segment
        out.set(reorderQK(model, data.subarray(off, off + kvDim), kvDim, 1, direction), off);
      }
    }
    return out;
  };
}

function layoutOf(c: PrefixTuningConfig, model: LlamaConfig): ParamLayout[] {
  const P = c.num_virtual_tokens, D = model.nKvHeads * model.headDim, H = c.encoder_hidden_size ?? D, W = width(model);
  if (!projected(c)) return [{ key: PROMPT_KEY, shape: [P, W], reorder: prefixReorder(model) }];
  // The projection's output rows are in our (GGUF) key order; these tensors only live in our checkpoints.
  return [
    { key: `${E}embedding.weight`, shape: [P, D] },
    { key: `${E}transform.0.weight`, shape: [H, D] }, { key: `${E}transform.0.bias`, shape: [H] },
    { key: `${E}transform.2.weight`, shape: [W, H] }, { key: `${E}transform.2.bias`, shape: [W] },
  ];
}

/** The prefix [P, layers·2·kvDim]: the parameter, or the projection of the embedding. */
function prefixOf<T>(g: Graph<T>, c: PrefixTuningConfig, p: ParamStore<T>): V<T> {
  if (!projected(c)) return g.param(p.get(PROMPT_KEY));
  const lin = (name: string, x: V<T>) => {
    const W = g.param(p.get(`${E}${name}.weight`)), b = g.param(p.get(`${E}${name}.bias`));
    const xw = g.matmul(x, W, { transB: true });
    const y = g.addCols(xw, b);
    for (const v of [x, xw, W, b]) g.free(v);
    return y;
  };
  const h = lin("transform.0", g.param(p.get(`${E}embedding.weight`)));
  const t = g.act(h, "tanh");
  g.free(h);
  return lin("transform.2", t);
}

export const PREFIX_TUNING: PeftMethod<PrefixTuningConfig> = {
  peftType: "PREFIX_TUNING",
  normalize: normalizePrefixTuningConfig,
  label: () => "Prefix tuning",
  describe: (c) => `prefix tuning, ${c.num_virtual_tokens} virtual tokens${projected(c) ? `, projection ${c.encoder_hidden_size}` : ""}`,
  layout: layoutOf,
  init(c, model, seed) {
    const rng = new Rng(seed);
    const out = new Map<string, Float32Array>();
    const zero = c.init_weights === "zero";
    for (const l of layoutOf(c, model)) {
      const n = l.shape.reduce((a, b) => a * b, 1);
      if (l.key === PROMPT_KEY || l.key.endsWith("embedding.weight")) {
        out.set(l.key, zero ? new Float32Array(n) : Float32Array.from({ length: n }, () => rng.normal(0, 1))); // nn.Embedding: N(0, 1)
      } else if (l.key.endsWith(".weight")) {
        const w = linearInit(() => rng.uniform(), l.shape[0], l.shape[1]);
        const last = l.key.includes("transform.2") && zero;
        out.set(l.key, last ? new Float32Array(n) : w.weight);
        out.set(l.key.replace(/weight$/, "bias"), last ? new Float32Array(l.shape[0]) : w.bias);
      }
    }
    return out;
  },
  hooks<T>(c: PrefixTuningConfig, model: LlamaConfig, params: ParamStore<T>, weight: number): Hooks<T> {
    noWeight("prefix tuning", weight);
    const kvDim = model.nKvHeads * model.headDim;
    return {
      linear: () => [],
      norm: () => undefined,
      virtualTokens: c.num_virtual_tokens,
      kvPrefix(g, layer) {
        const all = g.memo(params, () => prefixOf(g, c, params));
        const k = g.sliceCols(all, 2 * layer * kvDim, kvDim), v = g.sliceCols(all, (2 * layer + 1) * kvDim, kvDim);
        g.free(all);
        return { k, v };
      },
    };
  },
  export: {
    config: (c) => ({ ...c, inference_mode: true }),
    values<T>(c: PrefixTuningConfig, _model: LlamaConfig, params: ParamStore<T>, be: Backend<T>) {
      const g = new Graph(be, { grad: false, training: false, seed: 0 });
      const v = prefixOf(g, c, params);
      return new Map([[PROMPT_KEY, projected(c) ? g.detach(v) : be.copy(v.value)]]);
    },
  },
  cannotMerge: "the prefix is attention input, not weights",
};
