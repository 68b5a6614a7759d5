/**
 * LN tuning (Zhao et al. 2023), as PEFT's LN_TUNING: train a copy of each targeted RMSNorm's
 * weight, everything else frozen. PEFT's llama default targets every norm (input_layernorm,
 * post_attention_layernorm and the final norm). On disk: <norm>.ln_tuning_layers.weight [dim].
 * Merging swaps the trained weights in (as PEFT swaps the layers); unmerge restores the originals.
 */
import { PeftError } from "../../errors.ts";
import type { Backend } from "../../model/backend.ts";
import type { LlamaConfig } from "../../model/config.ts";
import type { Hooks, NormHook } from "../../model/sites.ts";
import { ConfigReader } from "../config_common.ts";
import { peftKey } from "../keys.ts";
import type { MethodConfig, ParamLayout, ParamStore, PeftMethod } from "../method.ts";
import { NORM_MODULES, type NormTarget, resolveNorms } from "../norms.ts";

export interface LnTuningConfig extends MethodConfig {
  peft_type: "LN_TUNING";
  target_modules: string[] | string;
  modules_to_save: null;
}

const LABEL = { name: "LN tuning", code: "LN_TUNING" };

export function normalizeLnTuningConfig(user: Record<string, unknown>): LnTuningConfig {
  const c = new ConfigReader("LN tuning", "LN_TUNING_CONFIG", "LN_TUNING", user, { target_modules: null, modules_to_save: null, exclude_modules: null });
  const target_modules = c.targets("target_modules", NORM_MODULES);
  if (!(c.u.modules_to_save === null || (Array.isArray(c.u.modules_to_save) && !c.u.modules_to_save.length))) {
    c.bad("modules_to_save", `is not supported with LN tuning (got ${JSON.stringify(c.u.modules_to_save)})`);
  }
  if (c.u.exclude_modules !== null) c.bad("exclude_modules", "is not supported (use target_modules)");
  return { ...c.extras(), ...c.common(), peft_type: "LN_TUNING", target_modules, modules_to_save: null, exclude_modules: null };
}

const keyOf = (n: NormTarget) => peftKey(n.path, "ln_tuning_layers.weight");
const targetsOf = (c: LnTuningConfig, model: LlamaConfig) => resolveNorms(c.target_modules, model, LABEL);

export const LN_TUNING: PeftMethod<LnTuningConfig> = {
  peftType: "LN_TUNING",
  normalize: normalizeLnTuningConfig,
  label: () => "LN tuning",
  describe: (c) => `LN tuning of ${JSON.stringify(c.target_modules)}`,
  layout: (config, model): ParamLayout[] => targetsOf(config, model).map((n) => ({ key: keyOf(n), shape: [model.dim] })),
  // The copies start as the base norm weights (initFromBase); zeros here are overwritten.
  init: (config, model) => new Map(targetsOf(config, model).map((n) => [keyOf(n), new Float32Array(model.dim)])),
  initFromBase<T>(config: LnTuningConfig, model: LlamaConfig, be: Backend<T>, params: ParamStore<T>): void {
    for (const n of targetsOf(config, model)) be.copyInto(params.get(keyOf(n)).value, be.weight(n.weight));
  },
  hooks<T>(config: LnTuningConfig, model: LlamaConfig, params: ParamStore<T>, weight: number): Hooks<T> {
    if (weight !== 1) throw new PeftError("UNSUPPORTED", `LN tuning adapters replace norm weights and cannot be combined with a weight other than 1 (got ${weight})`);
    const byName = new Map<string, NormHook<T>>();
    for (const n of targetsOf(config, model)) {
      const p = params.get(keyOf(n));
      byName.set(n.weight, { weight: (g) => g.param(p) });
    }
    return { linear: () => [], norm: (name) => byName.get(name) };
  },
  merge: {
    targets: (config, model) => targetsOf(config, model).map((n) => n.weight),
    apply<T>(config: LnTuningConfig, be: Backend<T>, name: string, W: T, params: ParamStore<T>, model: LlamaConfig): T {
      const n = targetsOf(config, model).find((x) => x.weight === name)!;
      be.copyInto(W, params.get(keyOf(n)).value);
      return W;
    },
  },
};
