/**
 * BitFit (Ben Zaken et al. 2022): train only bias terms. Where a linear has a base bias (qwen2's
 * q/k/v) BitFit trains that bias: the parameter starts as a copy of it and the pass adds its
 * change, so the file holds the whole trained bias. llama's linears (and qwen2's others) have none,
 * so BitFit adds zero-initialised biases there: y = W·x + b, the model unchanged at step 0.
 * target_modules defaults to every block linear. HF PEFT has no BitFit; the directory uses PEFT's
 * layout with peft_type "BITFIT" and each bias saved as a full tensor under its HF name
 * (base_model.model.model.layers.0.self_attn.q_proj.bias [out]), the way PEFT saves
 * modules_to_save tensors. Not mergeable: most targets have no base bias to hold it.
 */
import type { LlamaConfig } from "../../model/config.ts";
import { biasName, ggufLinearName } from "../../model/config.ts";
import type { Backend } from "../../model/backend.ts";
import type { Hooks, LinearHook } from "../../model/sites.ts";
import { ConfigReader } from "../config_common.ts";
import { linearPath, peftKey } from "../keys.ts";
import type { MethodConfig, ParamLayout, ParamStore, PeftMethod } from "../method.ts";
import { resolveTargets } from "../targets.ts";

export interface BitfitConfig extends MethodConfig {
  peft_type: "BITFIT";
  target_modules: string[] | string;
  layers_to_transform: number[] | null;
}

const LABEL = { name: "BitFit", code: "BITFIT" };

export function normalizeBitfitConfig(user: Record<string, unknown>): BitfitConfig {
  const c = new ConfigReader("BitFit", "BITFIT_CONFIG", "BITFIT", user, { target_modules: null, layers_to_transform: null, bias: "all" });
  const target_modules = c.targets("target_modules", "all-linear");
  const layers_to_transform = c.layers();
  c.checkLayersWithRegex(target_modules, layers_to_transform);
  if (c.u.bias !== "all") c.bad("bias", `must be "all" (BitFit trains the biases of every targeted linear), got ${JSON.stringify(c.u.bias)}`);
  return { ...c.extras(), ...c.common(), peft_type: "BITFIT", target_modules, layers_to_transform, bias: "all" };
}

const targetsOf = (c: BitfitConfig, model: LlamaConfig) =>
  resolveTargets(c, model, LABEL).map((t) => ({
    ...t,
    key: peftKey(linearPath(t.layer, t.module), "bias"),
    weight: ggufLinearName(t.module, t.layer),
    baseBias: biasName(model, t.module, t.layer),
  }));

export const BITFIT: PeftMethod<BitfitConfig> = {
  peftType: "BITFIT",
  normalize: normalizeBitfitConfig,
  label: () => "BitFit",
  describe: (c) => `BitFit biases on ${JSON.stringify(c.target_modules)}`,
  layout: (config, model): ParamLayout[] =>
    targetsOf(config, model).map((t) => ({ key: t.key, shape: [t.outFeatures], qkRows: t.module === "q_proj" || t.module === "k_proj" })),
  init: (config, model) => new Map(targetsOf(config, model).map((t) => [t.key, new Float32Array(t.outFeatures)])),
  initFromBase<T>(config: BitfitConfig, model: LlamaConfig, be: Backend<T>, params: ParamStore<T>): void {
    for (const t of targetsOf(config, model)) if (t.baseBias) be.copyInto(params.get(t.key).value, be.weight(t.baseBias));
  },
  hooks<T>(config: BitfitConfig, model: LlamaConfig, params: ParamStore<T>, weight: number): Hooks<T> {
    const bySite = new Map<string, LinearHook<T>[]>();
    for (const t of targetsOf(config, model)) {
      const p = params.get(t.key);
      bySite.set(t.weight, [{
        additive: true,
        output(g, y) {
          const b = g.param(p);
          // The pass already added the base bias (if any): add the trained bias's change from it.
          let d = b;
          if (t.baseBias) {
            const base = g.constant(g.be.weight(t.baseBias));
            d = g.axpy(b, base, -1);
            g.free(base);
          }
          const dw = weight === 1 ? d : g.scale(d, weight);
          const out = g.addCols(y, dw);
          g.free(y);
          if (dw !== d) g.free(dw);
          if (d !== b) g.free(d);
          g.free(b);
          return out;
        },
      }]);
    }
    return { linear: (site) => bySite.get(site.weight) ?? [], norm: () => undefined };
  },
  cannotMerge: "BitFit biases stay beside the base weights: llama-style linears have no bias tensors to fold them into",
};
