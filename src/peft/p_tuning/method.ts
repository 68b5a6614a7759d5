/**
 * P-tuning (Liu et al. 2021), as PEFT's P_TUNING: virtual-token embeddings produced by a trained
 * prompt encoder over a learned embedding table [P, dim] — an MLP (Linear·ReLU·Linear·ReLU·Linear,
 * hidden encoder_hidden_size) or a bidirectional LSTM (encoder_num_layers, PyTorch's gate order
 * i, f, g, o) followed by Linear·ReLU·Linear. The encoder runs on the GPU as graph ops, forward
 * and backward. As PEFT saves it, the directory holds the encoder's output as prompt_embeddings
 * [P, dim] with inference_mode true, so inference (and loading it back) needs no encoder; our
 * training checkpoints keep the encoder's own tensors (PEFT's module names) to resume.
 */
import type { Backend } from "../../model/backend.ts";
import type { LlamaConfig } from "../../model/config.ts";
import { Graph, type V } from "../../model/graph.ts";
import type { Hooks } from "../../model/sites.ts";
import { Rng } from "../../util/rng.ts";
import { ConfigReader } from "../config_common.ts";
import type { MethodConfig, ParamLayout, ParamStore, PeftMethod } from "../method.ts";
import { linearInit, PROMPT_DEFAULTS, type PromptLearningKeys, promptKeys } from "../prompt_common.ts";
import { noWeight, PROMPT_KEY, promptHooks } from "../prompt_tuning/method.ts";

export interface PTuningConfig extends MethodConfig, PromptLearningKeys {
  peft_type: "P_TUNING";
  encoder_reparameterization_type: "MLP" | "LSTM";
  encoder_hidden_size: number | null;
  encoder_num_layers: number;
  encoder_dropout: number;
}

export function normalizePTuningConfig(user: Record<string, unknown>, model?: LlamaConfig): PTuningConfig {
  const c = new ConfigReader("P-tuning", "P_TUNING_CONFIG", "P_TUNING", user, {
    ...PROMPT_DEFAULTS, encoder_reparameterization_type: "MLP", encoder_hidden_size: null, encoder_num_layers: 2, encoder_dropout: 0,
  });
  const keys = promptKeys(c, model, (m) => ({ token_dim: m.dim, num_attention_heads: m.nHeads }));
  const type = c.u.encoder_reparameterization_type;
  if (type !== "MLP" && type !== "LSTM") c.bad("encoder_reparameterization_type", `must be "MLP" or "LSTM", got ${JSON.stringify(type)}`);
  const hidden = c.u.encoder_hidden_size ?? keys.token_dim;
  if (hidden !== null && !(Number.isInteger(hidden) && (hidden as number) > 0)) c.bad("encoder_hidden_size", `must be a positive integer, got ${JSON.stringify(hidden)}`);
  const layers = c.u.encoder_num_layers;
  if (!(Number.isInteger(layers) && (layers as number) >= 1)) c.bad("encoder_num_layers", `must be a positive integer, got ${JSON.stringify(layers)}`);
  const dropout = c.u.encoder_dropout;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1)) c.bad("encoder_dropout", `must be in [0, 1), got ${JSON.stringify(dropout)}`);
  return {
    ...c.extras(), ...c.common(), ...keys, peft_type: "P_TUNING", encoder_reparameterization_type: type as "MLP" | "LSTM",
    encoder_hidden_size: hidden as number | null, encoder_num_layers: layers as number, encoder_dropout: dropout as number, modules_to_save: null,
  };
}

const E = "prompt_encoder.";
const lstmKeys = (layer: number, reverse: boolean) => {
  const s = `_l${layer}${reverse ? "_reverse" : ""}`;
  return { wih: `${E}lstm_head.weight_ih${s}`, whh: `${E}lstm_head.weight_hh${s}`, bih: `${E}lstm_head.bias_ih${s}`, bhh: `${E}lstm_head.bias_hh${s}` };
};

/** The trained tensors (PEFT's module names), in the order PyTorch creates them. */
function trainingLayout(c: PTuningConfig, model: LlamaConfig): ParamLayout[] {
  const D = model.dim, H = c.encoder_hidden_size ?? D, P = c.num_virtual_tokens;
  const out: ParamLayout[] = [{ key: `${E}embedding.weight`, shape: [P, D] }];
  const lin = (name: string, o: number, i: number) => out.push({ key: `${E}${name}.weight`, shape: [o, i] }, { key: `${E}${name}.bias`, shape: [o] });
  if (c.encoder_reparameterization_type === "MLP") {
    lin("mlp_head.0", H, D);
    lin("mlp_head.2", H, H);
    lin("mlp_head.4", D, H);
  } else {
    for (let l = 0; l < c.encoder_num_layers; l++) {
      for (const rev of [false, true]) {
        const k = lstmKeys(l, rev);
        out.push({ key: k.wih, shape: [4 * H, l === 0 ? D : 2 * H] }, { key: k.whh, shape: [4 * H, H] }, { key: k.bih, shape: [4 * H] }, { key: k.bhh, shape: [4 * H] });
      }
    }
    lin("mlp_head.0", 2 * H, 2 * H);
    lin("mlp_head.2", D, 2 * H);
  }
  return out;
}

/** x·Wᵀ + b for the Linear `name` (consumes x). */
function linear<T>(g: Graph<T>, p: ParamStore<T>, name: string, x: V<T>): V<T> {
  const W = g.param(p.get(`${E}${name}.weight`)), b = g.param(p.get(`${E}${name}.bias`));
  const xw = g.matmul(x, W, { transB: true });
  const y = g.addCols(xw, b);
  for (const v of [x, xw, W, b]) g.free(v);
  return y;
}

const act = <T>(g: Graph<T>, x: V<T>, fn: "relu" | "tanh" | "sigmoid") => {
  const y = g.act(x, fn);
  g.free(x);
  return y;
};

/** One direction of one LSTM layer over the P rows of x ([P, in]) -> [P, H] (time order). */
function lstmDirection<T>(g: Graph<T>, p: ParamStore<T>, x: V<T>, H: number, layer: number, reverse: boolean): V<T> {
  const k = lstmKeys(layer, reverse);
  const Wih = g.param(p.get(k.wih)), Whh = g.param(p.get(k.whh)), bih = g.param(p.get(k.bih)), bhh = g.param(p.get(k.bhh));
  // x·W_ihᵀ + b_ih + b_hh for every step at once; only h·W_hhᵀ is per step.
  const xw0 = g.matmul(x, Wih, { transB: true });
  const xw1 = g.addCols(xw0, bih);
  const xw = g.addCols(xw1, bhh);
  for (const v of [xw0, xw1]) g.free(v);
  const P = x.rows;
  const hs: V<T>[] = new Array(P);
  let h: V<T> | undefined, c: V<T> | undefined;
  for (let s = 0; s < P; s++) {
    const t = reverse ? P - 1 - s : s;
    const row = g.sliceRows(xw, t, 1);
    const gates = h ? g.matmulAdd(row, h, Whh, { transB: true }) : row;
    const part = (i: number, fn: "sigmoid" | "tanh") => act(g, g.sliceCols(gates, i * H, H), fn);
    const ig = part(0, "sigmoid"), fg = part(1, "sigmoid"), gg = part(2, "tanh"), og = part(3, "sigmoid");
    g.free(gates);
    const igg = g.mul(ig, gg);
    let cNew: V<T>;
    if (c) {
      const fc = g.mul(fg, c);
      cNew = g.add(fc, igg);
      g.free(fc);
      g.free(c);
    } else cNew = g.keep(igg);
    const tc = g.act(cNew, "tanh");
    const hNew = g.mul(og, tc);
    for (const v of [ig, fg, gg, og, igg, tc]) g.free(v);
    if (h) g.free(h);
    c = cNew;
    h = hNew;
    hs[t] = g.keep(hNew);
  }
  for (const v of [h!, c!, xw, Wih, Whh, bih, bhh]) g.free(v);
  const out = g.concatRows(hs);
  for (const v of hs) g.free(v);
  return out;
}

/** The prompt encoder: [P, dim] virtual-token embeddings from the trained tensors. */
export function encodePrompt<T>(g: Graph<T>, c: PTuningConfig, model: LlamaConfig, p: ParamStore<T>): V<T> {
  const H = c.encoder_hidden_size ?? model.dim;
  let x = g.param(p.get(`${E}embedding.weight`));
  if (c.encoder_reparameterization_type === "MLP") {
    x = act(g, linear(g, p, "mlp_head.0", x), "relu");
    x = act(g, linear(g, p, "mlp_head.2", x), "relu");
    return linear(g, p, "mlp_head.4", x);
  }
  for (let l = 0; l < c.encoder_num_layers; l++) {
    if (l > 0 && c.encoder_dropout > 0) {
      const d = g.dropout(x, c.encoder_dropout, (g.seed ^ 0x5ca1ab1e) + l);
      g.free(x);
      x = d;
    }
    const fwd = lstmDirection(g, p, x, H, l, false), bwd = lstmDirection(g, p, x, H, l, true);
    g.free(x);
    x = g.concatCols([fwd, bwd]);
    g.free(fwd);
    g.free(bwd);
  }
  x = act(g, linear(g, p, "mlp_head.0", x), "relu");
  return linear(g, p, "mlp_head.2", x);
}

export const P_TUNING: PeftMethod<PTuningConfig> = {
  peftType: "P_TUNING",
  normalize: normalizePTuningConfig,
  label: () => "P-tuning",
  describe: (c) => `P-tuning, ${c.num_virtual_tokens} virtual tokens${c.inference_mode ? "" : ` (${c.encoder_reparameterization_type} encoder)`}`,
  layout: (c, model) => c.inference_mode ? [{ key: PROMPT_KEY, shape: [c.num_virtual_tokens, model.dim] }] : trainingLayout(c, model),
  init(c, model, seed) {
    const rng = new Rng(seed);
    const out = new Map<string, Float32Array>();
    const next = () => rng.uniform();
    for (const l of P_TUNING.layout(c, model)) {
      const n = l.shape.reduce((a, b) => a * b, 1);
      if (l.key === PROMPT_KEY || l.key.endsWith("embedding.weight")) {
        out.set(l.key, Float32Array.from({ length: n }, () => rng.normal(0, 1))); // nn.Embedding: N(0, 1)
      } else if (l.key.includes("lstm_head")) {
        const H = c.encoder_hidden_size ?? model.dim, b = 1 / Math.sqrt(H); // nn.LSTM: U(±1/√hidden)
        out.set(l.key, Float32Array.from({ length: n }, () => (2 * next() - 1) * b));
      } else if (l.key.endsWith(".weight")) {
        const w = linearInit(next, l.shape[0], l.shape[1]);
        out.set(l.key, w.weight);
        out.set(l.key.replace(/weight$/, "bias"), w.bias);
      }
    }
    return out;
  },
  hooks<T>(c: PTuningConfig, model: LlamaConfig, params: ParamStore<T>, weight: number): Hooks<T> {
    noWeight("P-tuning", weight);
    if (c.inference_mode) return promptHooks(c.num_virtual_tokens, params);
    return { linear: () => [], norm: () => undefined, virtualTokens: c.num_virtual_tokens, embedPrefix: (g) => g.memo(params, () => encodePrompt(g, c, model, params)) };
  },
  export: {
    config: (c) => ({ ...c, inference_mode: true }),
    values<T>(c: PTuningConfig, model: LlamaConfig, params: ParamStore<T>, be: Backend<T>) {
      if (c.inference_mode) return new Map([[PROMPT_KEY, be.copy(params.get(PROMPT_KEY).value)]]);
      const g = new Graph(be, { grad: false, training: false, seed: 0 });
      return new Map([[PROMPT_KEY, g.detach(encodePrompt(g, c, model, params))]]);
    },
  },
  cannotMerge: "virtual tokens are inputs, not weights",
};
