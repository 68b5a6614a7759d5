/**
 * Bottleneck adapters (Houlsby et al. 2019, Pfeiffer et al. 2020, He et al. 2022's parallel form),
 * as AdapterHub's `adapters` library defines them (HF PEFT has none): a small module f(z) =
 * up(act(down(z)))·scaling on a block's residual branch. For llama (no LayerNorm between the
 * branch and the stream) AdapterHub's pre/forward/post steps reduce to, with x the sublayer input
 * and h the branch output (the block then adds x):
 *   seq_bn (Pfeiffer, after the FFN):          h' = h + f(h + x)
 *   double_seq_bn (Houlsby, after attention and after the FFN): h' = h + f(h)
 *   par_bn (parallel, beside the FFN, scaling 4): h' = h + f(x)
 * (in general: z = is_parallel ? x : original_ln_before ? x + h : h; h' = f(z) + (is_parallel ||
 * residual_before_ln ? h : z)). Presets and keys are AdapterHub's (reduction_factor, non_linearity,
 * mh_adapter, output_adapter, scaling, init_weights, leave_out); the up-projection starts at zero
 * (init_weights "mam_adapter", our default for every preset) so the model is unchanged at step 0 —
 * AdapterHub's own default for seq_bn/double_seq_bn is "bert" (N(0, 0.02)), available by name.
 * On disk: AdapterHub's format, adapter_config.json {config, name, hidden_size, model_type, …} and
 * adapter.safetensors with keys model.layers.{i}.{attention,output}_adapters.adapters.{name}.adapter_down.0.weight, ….
 */
import type { Activation } from "../../model/backend.ts";
import { BOTTLENECK_MAX_D } from "../../kernels/bottleneck.ts";
import type { LlamaConfig } from "../../model/config.ts";
import type { Graph, Param, V } from "../../model/graph.ts";
import type { Branch, Hooks } from "../../model/sites.ts";
import { Rng } from "../../util/rng.ts";
import { ConfigReader } from "../config_common.ts";
import type { MethodConfig, ParamLayout, ParamStore, PeftMethod } from "../method.ts";

export interface BottleneckConfig extends MethodConfig {
  peft_type: "BOTTLENECK";
  /** The adapter's name inside AdapterHub's keys. */
  name: string;
  config: BnFields;
}

interface BnFields {
  architecture: "bottleneck";
  mh_adapter: boolean;
  output_adapter: boolean;
  reduction_factor: number;
  non_linearity: string;
  original_ln_before: boolean;
  original_ln_after: boolean;
  residual_before_ln: boolean;
  adapter_residual_before_ln: boolean;
  ln_before: boolean;
  ln_after: boolean;
  init_weights: "mam_adapter" | "bert" | "houlsby";
  is_parallel: boolean;
  scaling: number;
  use_gating: boolean;
  dropout: number;
  leave_out: number[];
  phm_layer: boolean;
  [k: string]: unknown;
}

const BASE: BnFields = {
  architecture: "bottleneck", mh_adapter: false, output_adapter: true, reduction_factor: 16, non_linearity: "relu", original_ln_before: true,
  original_ln_after: true, residual_before_ln: true, adapter_residual_before_ln: false, ln_before: false, ln_after: false, init_weights: "mam_adapter",
  is_parallel: false, scaling: 1, use_gating: false, dropout: 0, leave_out: [], phm_layer: false,
};

/** AdapterHub's presets (SeqBnConfig, DoubleSeqBnConfig, ParBnConfig), with our zero-up init. */
export const PRESETS: Record<string, Partial<BnFields>> = {
  seq_bn: {},
  pfeiffer: {},
  double_seq_bn: { original_ln_before: false, mh_adapter: true, non_linearity: "swish" },
  houlsby: { original_ln_before: false, mh_adapter: true, non_linearity: "swish" },
  par_bn: { original_ln_before: false, reduction_factor: 2, is_parallel: true, scaling: 4 },
};

/** AdapterHub's activation names -> our kernels (exact erf GELU is not one of them). */
const ACTS: Record<string, Activation> = {
  relu: "relu", swish: "silu", silu: "silu", tanh: "tanh", sigmoid: "sigmoid", gelu_new: "gelu", gelu_fast: "gelu", gelu_pytorch_tanh: "gelu",
};

export function normalizeBottleneckConfig(user: Record<string, unknown>, model?: LlamaConfig): BottleneckConfig {
  const c = new ConfigReader("bottleneck adapter", "BOTTLENECK_CONFIG", "BOTTLENECK", user, { config: "seq_bn", name: "adapter" });
  // AdapterHub's own adapter_config.json fields (kept for its loader).
  c.know("hidden_size", "model_type", "model_name", "model_class", "version", ...Object.keys(BASE));
  let preset = c.u.config;
  let fields: BnFields = { ...BASE };
  if (typeof preset === "string") {
    if (!(preset in PRESETS)) c.bad("config", `${JSON.stringify(preset)} is not one of ${Object.keys(PRESETS).join(", ")} (or an object of AdapterHub's BnConfig fields)`);
    fields = { ...BASE, ...PRESETS[preset] };
  } else if (preset && typeof preset === "object" && !Array.isArray(preset)) {
    const o = preset as Record<string, unknown>;
    if (o.architecture !== undefined && o.architecture !== "bottleneck") c.bad("config.architecture", `must be "bottleneck", got ${JSON.stringify(o.architecture)}`);
    fields = { ...BASE, init_weights: "bert", ...o } as BnFields; // AdapterHub's BnConfig default init is "bert"
    preset = "custom";
  } else {
    c.bad("config", `must be a preset name or an object, got ${JSON.stringify(preset)}`);
  }
  // Top-level shortcuts override the preset (reduction_factor: 16 beside config: "double_seq_bn").
  for (const k of Object.keys(BASE)) if (user[k] !== undefined) (fields as Record<string, unknown>)[k] = user[k];
  const f = fields!;
  const bool = (k: keyof BnFields) => typeof f[k] === "boolean" || c.bad(`config.${k}`, `must be true or false, got ${JSON.stringify(f[k])}`);
  for (const k of ["mh_adapter", "output_adapter", "original_ln_before", "original_ln_after", "adapter_residual_before_ln", "ln_before", "ln_after", "is_parallel", "use_gating", "phm_layer"] as const) bool(k);
  if (typeof f.residual_before_ln !== "boolean") c.bad("config.residual_before_ln", `must be true or false here (no LayerNorm sits between a llama branch and its stream), got ${JSON.stringify(f.residual_before_ln)}`);
  if (!f.mh_adapter && !f.output_adapter) c.bad("config", "needs mh_adapter or output_adapter (an adapter somewhere)");
  const rf = f.reduction_factor;
  if (typeof rf !== "number" || !(rf > 0)) c.bad("config.reduction_factor", `must be a positive number (per-layer mappings are not supported), got ${JSON.stringify(rf)}`);
  if (model && Math.floor(model.dim / rf) < 1) c.bad("config.reduction_factor", `${rf} leaves no bottleneck for hidden size ${model.dim}`);
  if (!(typeof f.non_linearity === "string" && f.non_linearity.toLowerCase() in ACTS)) {
    c.bad("config.non_linearity", `${JSON.stringify(f.non_linearity)} is not supported (${Object.keys(ACTS).join(", ")}; exact "gelu" is not)`);
  }
  for (const [k, why] of [["ln_before", "adapter LayerNorms"], ["ln_after", "adapter LayerNorms"], ["use_gating", "gating"], ["phm_layer", "PHM (Compacter) layers"]] as const) {
    if (f[k]) c.bad(`config.${k}`, `${why} are not supported`);
  }
  if (!f.original_ln_after) c.bad("config.original_ln_after", "must be true (the block adds the residual stream back)");
  if (!["mam_adapter", "bert", "houlsby"].includes(f.init_weights)) c.bad("config.init_weights", `must be "mam_adapter", "bert" or "houlsby", got ${JSON.stringify(f.init_weights)}`);
  if (typeof f.scaling !== "number" || !Number.isFinite(f.scaling)) c.bad("config.scaling", `must be a number ("learned"/"channel" scalings are not supported), got ${JSON.stringify(f.scaling)}`);
  if (typeof f.dropout !== "number" || !(f.dropout >= 0 && f.dropout < 1)) c.bad("config.dropout", `must be in [0, 1), got ${JSON.stringify(f.dropout)}`);
  if (!Array.isArray(f.leave_out) || !f.leave_out.every((l) => Number.isInteger(l) && l >= 0)) c.bad("config.leave_out", `must be a list of layer indices, got ${JSON.stringify(f.leave_out)}`);
  const name = c.u.name;
  if (typeof name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(name)) c.bad("name", `must be 1-64 characters of A-Z a-z 0-9 _ -, got ${JSON.stringify(name)}`);
  const extra = c.extras();
  for (const k of [...Object.keys(BASE), "hidden_size", "model_type", "model_name", "model_class", "version"]) delete extra[k];
  return { ...extra, ...c.common(), peft_type: "BOTTLENECK", name: name as string, config: { ...f, non_linearity: f.non_linearity.toLowerCase() } };
}

interface Site {
  layer: number;
  branch: Branch;
  prefix: string;
}

function sitesOf(c: BottleneckConfig, model: LlamaConfig): Site[] {
  const out: Site[] = [];
  for (let l = 0; l < model.nLayers; l++) {
    if (c.config.leave_out.includes(l)) continue;
    if (c.config.mh_adapter) out.push({ layer: l, branch: "attn", prefix: `model.layers.${l}.attention_adapters.adapters.${c.name}.` });
    if (c.config.output_adapter) out.push({ layer: l, branch: "ffn", prefix: `model.layers.${l}.output_adapters.adapters.${c.name}.` });
  }
  return out;
}

const down = (c: BottleneckConfig, model: LlamaConfig) => Math.max(1, Math.floor(model.dim / c.config.reduction_factor));

/** z·Wᵀ + b (consumes z). */
function affine<T>(g: Graph<T>, z: V<T>, W: Param<T>, b: Param<T>): V<T> {
  const w = g.param(W), bb = g.param(b);
  const zw = g.matmul(z, w, { transB: true });
  const y = g.addCols(zw, bb);
  for (const v of [z, zw, w, bb]) g.free(v);
  return y;
}

/** x + h as the block adds a branch back (consumes both). */
function addStream<T>(g: Graph<T>, x: V<T>, h: V<T>): V<T> {
  const out = g.add(x, h);
  g.free(x);
  g.free(h);
  return out;
}

export const BOTTLENECK: PeftMethod<BottleneckConfig> = {
  peftType: "BOTTLENECK",
  normalize: normalizeBottleneckConfig,
  label: () => "Bottleneck adapter",
  describe: (c) => `bottleneck adapter ${c.config.is_parallel ? "(parallel)" : c.config.mh_adapter ? "(Houlsby)" : "(Pfeiffer)"}, reduction ${c.config.reduction_factor}`,
  layout(c, model): ParamLayout[] {
    const D = model.dim, d = down(c, model);
    return sitesOf(c, model).flatMap((s) => [
      { key: `${s.prefix}adapter_down.0.weight`, shape: [d, D] }, { key: `${s.prefix}adapter_down.0.bias`, shape: [d] },
      { key: `${s.prefix}adapter_up.weight`, shape: [D, d] }, { key: `${s.prefix}adapter_up.bias`, shape: [D] },
    ]);
  },
  init(c, model, seed) {
    const out = new Map<string, Float32Array>();
    const D = model.dim, d = down(c, model), init = c.config.init_weights;
    for (const s of sitesOf(c, model)) {
      const rng = new Rng(seed * 1_000_003 + s.layer * 2 + (s.branch === "ffn" ? 1 : 0));
      const weight = (n: number, fanIn: number, isUp: boolean) =>
        Float32Array.from({ length: n }, () => {
          if (init === "bert") return rng.normal(0, 0.02);
          if (init === "houlsby") return Math.max(-0.02, Math.min(0.02, rng.normal(0, 0.01)));
          return isUp ? 0 : rng.uniformIn(-1 / Math.sqrt(fanIn), 1 / Math.sqrt(fanIn)); // mam_adapter: kaiming_uniform(a=√5) down, zero up
        });
      out.set(`${s.prefix}adapter_down.0.weight`, weight(d * D, D, false));
      out.set(`${s.prefix}adapter_down.0.bias`, new Float32Array(d));
      out.set(`${s.prefix}adapter_up.weight`, weight(D * d, d, true));
      out.set(`${s.prefix}adapter_up.bias`, new Float32Array(D));
    }
    return out;
  },
  hooks<T>(c: BottleneckConfig, model: LlamaConfig, params: ParamStore<T>, weight: number): Hooks<T> {
    const f = c.config, act = ACTS[f.non_linearity];
    const at = new Map(sitesOf(c, model).map((s) => [`${s.layer}.${s.branch}`, s]));
    return {
      linear: () => [],
      norm: () => undefined,
      residualAt: (layer, branch) => at.has(`${layer}.${branch}`),
      residual: (g, layer, branch, x, h) => module(g, layer, branch, x, h, false),
      residualStream: (g, layer, branch, x, h) => module(g, layer, branch, x, h, true),
    };

    /** The module's branch output h' (block adds x), or with `withStream` x + h' (consumes x too). */
    function module(g: Graph<T>, layer: number, branch: Branch, x: V<T>, h: V<T>, withStream: boolean): V<T> {
      const s = at.get(`${layer}.${branch}`);
      if (!s) return withStream ? addStream(g, x, h) : h;
      const p = (k: string) => params.get(s.prefix + k);
      // z: what the module reads; r: what its output is added to.
      const z = f.is_parallel ? g.keep(x) : f.original_ln_before ? g.add(x, h) : g.keep(h);
      const r = f.is_parallel || f.residual_before_ln ? h : g.keep(z);
      const d = down(c, model);
      if (!g.grad && !(g.training && f.dropout > 0) && d <= BOTTLENECK_MAX_D) {
        // Nothing to differentiate: the whole module in one dispatch (what decoding runs).
        const D = model.dim, N = g.be.shape(z.value).reduce((a, b) => a * b, 1) / D;
        const w = { wd: p("adapter_down.0.weight").value, bd: p("adapter_down.0.bias").value, wu: p("adapter_up.weight").value, bu: p("adapter_up.bias").value };
        const y = g.input(g.be.bottleneck(z.value, r.value, w, { N, D, d, fn: act, scale: f.scaling * weight }, withStream ? x.value : undefined));
        g.free(z);
        g.free(r);
        if (r !== h) g.free(h);
        if (withStream) g.free(x);
        return y;
      }
      const pre = affine(g, z, p("adapter_down.0.weight"), p("adapter_down.0.bias"));
      const a = g.act(pre, act);
      g.free(pre);
      let u = affine(g, a, p("adapter_up.weight"), p("adapter_up.bias"));
      if (f.dropout > 0) {
        const d = g.dropout(u, f.dropout, (g.seed ^ 0x0b0771e) + 2 * layer + (branch === "ffn" ? 1 : 0));
        g.free(u);
        u = d;
      }
      const out = g.axpy(r, u, f.scaling * weight);
      g.free(u);
      g.free(r);
      if (r !== h) g.free(h);
      return withStream ? addStream(g, x, out) : out;
    }
  },
  dir: {
    weightsFile: "adapter.safetensors",
    toJson: (c) => ({ config: c.config, name: c.name, model_type: "llama", model_class: "LlamaForCausalLM", version: "adapters.1.2.0" }),
  },
  cannotMerge: "a bottleneck module is a nonlinear branch, not a weight delta",
};
