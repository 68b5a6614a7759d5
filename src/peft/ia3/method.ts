/**
 * (IA)³ (Liu et al. 2022), as PEFT's ia3 tuner: a learned vector rescales each targeted linear,
 *   ordinary targets:      y = (W·x) ⊙ l       l: ia3_l of shape (out, 1)
 *   feedforward_modules:   y = W·(x ⊙ l)       l: ia3_l of shape (1, in)
 * initialised to ones (init_ia3_weights, PEFT's default) so the model starts unchanged. Merging
 * scales W's rows (or columns) by l; unmerging restores the original weights exactly.
 * PEFT's llama defaults: target_modules k_proj, v_proj, down_proj; feedforward_modules down_proj.
 */
import { PeftError } from "../../errors.ts";
import type { Backend } from "../../model/backend.ts";
import { ALL_LINEAR_MODULES, biasName, type LlamaConfig } from "../../model/config.ts";
import type { Graph, V } from "../../model/graph.ts";
import type { Hooks, LinearHook } from "../../model/sites.ts";
import { Rng, deriveSeed } from "../../util/rng.ts";
import { ConfigReader } from "../config_common.ts";
import { linearPath, peftKey } from "../keys.ts";
import type { MethodConfig, ParamLayout, ParamStore, PeftMethod } from "../method.ts";
import { type LoraTarget, moduleKey, resolveTargets } from "../targets.ts";
import { ggufLinearName } from "../../model/config.ts";

export interface Ia3Config extends MethodConfig {
  peft_type: "IA3";
  target_modules: string[] | string;
  feedforward_modules: string[] | string;
  layers_to_transform: number[] | null;
  init_ia3_weights: boolean;
  fan_in_fan_out: false;
  modules_to_save: null;
}

/** PEFT's TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING / _FEEDFORWARD_MODULES_MAPPING["llama"]. */
export const IA3_LLAMA_TARGETS = ["k_proj", "v_proj", "down_proj"];
export const IA3_LLAMA_FEEDFORWARD = ["down_proj"];
const LABEL = { name: "(IA)³", code: "IA3" };

export function normalizeIa3Config(user: Record<string, unknown>): Ia3Config {
  const c = new ConfigReader("(IA)³", "IA3_CONFIG", "IA3", user, {
    target_modules: null, feedforward_modules: null, layers_to_transform: null, init_ia3_weights: true, fan_in_fan_out: false,
    modules_to_save: null, exclude_modules: null,
  });
  const target_modules = c.targets("target_modules", IA3_LLAMA_TARGETS);
  // An empty list is valid here (no feed-forward targets), unlike target_modules.
  const ff = c.u.feedforward_modules;
  const feedforward_modules = Array.isArray(ff) && ff.length === 0 ? [] : c.targets("feedforward_modules", IA3_LLAMA_FEEDFORWARD);
  if (Array.isArray(target_modules) && Array.isArray(feedforward_modules) && !feedforward_modules.every((f) => target_modules.includes(f))) {
    c.bad("feedforward_modules", `should be a subset of target_modules (${JSON.stringify(feedforward_modules)} is not in ${JSON.stringify(target_modules)})`);
  }
  const layers_to_transform = c.layers();
  c.checkLayersWithRegex(target_modules, layers_to_transform);
  if (c.u.fan_in_fan_out !== false) c.bad("fan_in_fan_out", "must be false (llama linears store weights as [out, in])");
  if (!(c.u.modules_to_save === null || (Array.isArray(c.u.modules_to_save) && !c.u.modules_to_save.length))) {
    c.bad("modules_to_save", `is not supported with (IA)³ (got ${JSON.stringify(c.u.modules_to_save)})`);
  }
  if (c.u.exclude_modules !== null) c.bad("exclude_modules", "is not supported (use target_modules / layers_to_transform)");
  return {
    ...c.extras(),
    ...c.common(),
    peft_type: "IA3",
    target_modules,
    feedforward_modules,
    layers_to_transform,
    init_ia3_weights: c.bool("init_ia3_weights"),
    fan_in_fan_out: false,
    modules_to_save: null,
    exclude_modules: null,
  };
}

/** PEFT's _check_target_module_feedforward: regex fullmatch, or the key ends with a listed name. */
function isFeedforward(config: Ia3Config, t: LoraTarget): boolean {
  const key = moduleKey(t.layer, t.module);
  const ff = config.feedforward_modules;
  return typeof ff === "string" ? new RegExp(`^(?:${ff})$`).test(key) : ff.some((f) => key.endsWith(f));
}

interface Ia3Target extends LoraTarget {
  key: string;
  feedforward: boolean;
  weight: string;
}

function targetsOf(config: Ia3Config, model: LlamaConfig): Ia3Target[] {
  return resolveTargets(config, model, LABEL).map((t) => ({
    ...t,
    key: peftKey(linearPath(t.layer, t.module), "ia3_l"),
    feedforward: isFeedforward(config, t),
    weight: ggufLinearName(t.module, t.layer),
  }));
}

export const IA3: PeftMethod<Ia3Config> = {
  peftType: "IA3",
  normalize: normalizeIa3Config,
  label: () => "(IA)³",
  describe: (c) => `(IA)³ on ${JSON.stringify(c.target_modules)} (feedforward ${JSON.stringify(c.feedforward_modules)})`,

  layout(config, model): ParamLayout[] {
    // Output scaling of k_proj follows k's heads (q/k row order); input scaling follows the input.
    return targetsOf(config, model).map((t) =>
      t.feedforward ? { key: t.key, shape: [1, t.inFeatures] } : { key: t.key, shape: [t.outFeatures, 1], qkRows: t.module === "q_proj" || t.module === "k_proj" }
    );
  },

  init(config, model, seed): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    for (const t of targetsOf(config, model)) {
      const n = t.feedforward ? t.inFeatures : t.outFeatures;
      const v = new Float32Array(n);
      if (config.init_ia3_weights) v.fill(1);
      else {
        // PEFT keeps torch.randn values; ours are seeded per module.
        const rng = new Rng(deriveSeed(seed, t.layer, ALL_LINEAR_MODULES.indexOf(t.module)));
        for (let i = 0; i < n; i++) v[i] = rng.normal(0, 1);
      }
      out.set(t.key, v);
    }
    return out;
  },

  hooks<T>(config: Ia3Config, model: LlamaConfig, params: ParamStore<T>, weight: number): Hooks<T> {
    if (weight !== 1) throw new PeftError("UNSUPPORTED", `(IA)³ adapters scale activations and cannot be combined with a weight other than 1 (got ${weight})`);
    const bySite = new Map<string, LinearHook<T>[]>();
    for (const t of targetsOf(config, model)) {
      const p = params.get(t.key);
      const scaleBy = (g: Graph<T>, v: V<T>) => {
        const l = g.param(p);
        const out = g.mulCols(v, l);
        g.free(v);
        return out;
      };
      bySite.set(t.weight, [t.feedforward ? { input: (g, x) => scaleBy(g, x) } : { output: (g, y) => scaleBy(g, y) }]);
    }
    return { linear: (site) => bySite.get(site.weight) ?? [], norm: () => undefined };
  },

  // Output scaling scales the base bias too (PEFT's IA3 Linear scales base_layer(x), bias included,
  // and its merge multiplies the bias by ia3_l); input scaling leaves it alone.
  merge: {
    targets: (config, model) =>
      targetsOf(config, model).flatMap((t) => {
        const bias = t.feedforward ? undefined : biasName(model, t.module, t.layer);
        return bias ? [t.weight, bias] : [t.weight];
      }),
    apply<T>(config: Ia3Config, be: Backend<T>, name: string, W: T, params: ParamStore<T>, model: LlamaConfig): T {
      const t = targetsOf(config, model).find((x) => x.weight === name || (!x.feedforward && biasName(model, x.module, x.layer) === name))!;
      const l = params.get(t.key).value;
      if (name !== t.weight) return be.mul(W, l); // the bias: [out] ⊙ l
      return t.feedforward ? be.mulCols(W, l, t.outFeatures, t.inFeatures) : be.mulRows(W, l, t.outFeatures, t.inFeatures);
    },
  },
};
