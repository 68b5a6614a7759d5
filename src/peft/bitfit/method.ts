/**
 * BitFit (Ben Zaken et al. 2022): train only bias terms. llama's linears have no biases, so
 * BitFit adds zero-initialised biases to the chosen linears (target_modules, default every block
 * linear) and trains those: y = W·x + b, the model unchanged at step 0. On qwen2's q/k/v, which
 * have base biases, the trained bias is added to the base one (the file holds the change). HF
 * PEFT has no BitFit; the directory uses PEFT's layout with peft_type "BITFIT" and each bias saved
 * as a full tensor under its HF name (base_model.model.model.layers.0.self_attn.q_proj.bias [out]),
 * the way PEFT saves modules_to_save tensors. Not mergeable: most targets have no base bias to hold it.
 */
import type { LlamaConfig } from "../../model/config.ts";
import { ggufLinearName } from "../../model/config.ts";
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
  resolveTargets(c, model, LABEL).map((t) => ({ ...t, key: peftKey(linearPath(t.layer, t.module), "bias"), weight: ggufLinearName(t.module, t.layer) }));

export const BITFIT: PeftMethod<BitfitConfig> = {
  peftType: "BITFIT",
  normalize: normalizeBitfitConfig,
  label: () => "BitFit",
  describe: (c) => `BitFit biases on ${JSON.stringify(c.target_modules)}`,
  layout: (config, model): ParamLayout[] =>
    targetsOf(config, model).map((t) => ({ key: t.key, shape: [t.outFeatures], qkRows: t.module === "q_proj" || t.module === "k_proj" })),
  init: (config, model) => new Map(targetsOf(config, model).map((t) => [t.key, new Float32Array(t.outFeatures)])),
  hooks<T>(config: BitfitConfig, model: LlamaConfig, params: ParamStore<T>, weight: number): Hooks<T> {
    const bySite = new Map<string, LinearHook<T>[]>();
    for (const t of targetsOf(config, model)) {
      const p = params.get(t.key);
      bySite.set(t.weight, [{
        additive: true,
        output(g, y) {
          const b = g.param(p);
          const out = g.addCols(y, weight === 1 ? b : g.scale(b, weight));
          g.free(y);
          return out;
        },
      }]);
    }
    return { linear: (site) => bySite.get(site.weight) ?? [], norm: () => undefined };
  },
  cannotMerge: "the base linears have no bias tensors to fold BitFit biases into (keep the adapter unmerged)",
};
