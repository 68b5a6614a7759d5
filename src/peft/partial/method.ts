/**
 * Partial fine-tuning (the "selective" family): whole chosen modules are trained — every block
 * linear and/or norm of target_modules in the layers of layers_to_transform (e.g. the last N
 * layers) — through an f32 master copy of each; gradients and optimizer state exist only for
 * those. HF PEFT expresses this as modules_to_save; the directory here has peft_type "PARTIAL"
 * and saves each trained tensor in full under its HF name, as PEFT saves modules_to_save
 * (base_model.model.model.layers.7.mlp.down_proj.weight). target_modules: linear names, norm names
 * (input_layernorm, post_attention_layernorm), "all-linear", or "all" (every linear and norm).
 * Merging swaps the trained weights in; unmerge restores the originals.
 */
import { PeftError } from "../../errors.ts";
import type { Backend } from "../../model/backend.ts";
import { ALL_LINEAR_MODULES, ggufLinearName, type LlamaConfig } from "../../model/config.ts";
import type { Hooks, LinearHook, NormHook } from "../../model/sites.ts";
import { ConfigReader } from "../config_common.ts";
import { linearPath, peftKey } from "../keys.ts";
import type { MethodConfig, ParamLayout, ParamStore, PeftMethod } from "../method.ts";
import { resolveNorms } from "../norms.ts";
import { resolveTargets } from "../targets.ts";
import { requireDenseBase } from "../lora/method.ts";

export interface PartialConfig extends MethodConfig {
  peft_type: "PARTIAL";
  target_modules: string[] | string;
  layers_to_transform: number[] | null;
}

const LABEL = { name: "partial fine-tuning", code: "PARTIAL" };
const BLOCK_NORMS = ["input_layernorm", "post_attention_layernorm"];

export function normalizePartialConfig(user: Record<string, unknown>): PartialConfig {
  const c = new ConfigReader("partial fine-tuning", "PARTIAL_CONFIG", "PARTIAL", user, { target_modules: null, layers_to_transform: null });
  const target_modules = c.targets("target_modules", "all");
  const layers_to_transform = c.layers();
  if (typeof target_modules === "string" && !["all", "all-linear"].includes(target_modules) && layers_to_transform !== null) {
    c.checkLayersWithRegex(target_modules, layers_to_transform);
  }
  return { ...c.extras(), ...c.common(), peft_type: "PARTIAL", target_modules, layers_to_transform };
}

interface Target {
  weight: string;
  key: string;
  shape: number[];
  kind: "linear" | "norm";
  qk: boolean;
}

function targetsOf(c: PartialConfig, model: LlamaConfig): Target[] {
  const tm = c.target_modules;
  const wantsLinears = tm === "all" || tm === "all-linear" || typeof tm === "string" || tm.some((m) => ALL_LINEAR_MODULES.includes(m) || !BLOCK_NORMS.includes(m));
  const wantsNorms = tm === "all" || (Array.isArray(tm) && tm.some((m) => BLOCK_NORMS.includes(m)));
  const out: Target[] = [];
  if (wantsLinears) {
    const spec = { target_modules: tm === "all" ? "all-linear" : Array.isArray(tm) ? tm.filter((m) => !BLOCK_NORMS.includes(m)) : tm, layers_to_transform: c.layers_to_transform };
    for (const t of resolveTargets(spec, model, LABEL)) {
      out.push({
        weight: ggufLinearName(t.module, t.layer), key: peftKey(linearPath(t.layer, t.module), "weight"), shape: [t.outFeatures, t.inFeatures],
        kind: "linear", qk: t.module === "q_proj" || t.module === "k_proj",
      });
    }
  }
  if (wantsNorms) {
    const names = tm === "all" ? BLOCK_NORMS : (tm as string[]).filter((m) => BLOCK_NORMS.includes(m));
    for (const n of resolveNorms(names, model, LABEL, c.layers_to_transform ?? [...Array(model.nLayers).keys()])) {
      out.push({ weight: n.weight, key: peftKey(n.path, "weight"), shape: [model.dim], kind: "norm", qk: false });
    }
  }
  return out;
}

export const PARTIAL: PeftMethod<PartialConfig> = {
  peftType: "PARTIAL",
  normalize: normalizePartialConfig,
  label: () => "Partial",
  describe: (c) => `partial fine-tuning of ${JSON.stringify(c.target_modules)}${c.layers_to_transform ? ` in layers ${c.layers_to_transform.join(",")}` : ""}`,
  layout: (config, model): ParamLayout[] => targetsOf(config, model).map((t) => ({ key: t.key, shape: t.shape, qkRows: t.qk })),
  // The master copies start as the base weights (initFromBase).
  init: (config, model) => new Map(targetsOf(config, model).map((t) => [t.key, new Float32Array(t.shape.reduce((a, b) => a * b, 1))])),
  initFromBase<T>(config: PartialConfig, model: LlamaConfig, be: Backend<T>, params: ParamStore<T>): void {
    const linears = targetsOf(config, model).filter((t) => t.kind === "linear").map((t) => t.weight);
    requireDenseBase(be, linears, "partial fine-tuning of linears (it trains an f32 master copy of each)");
    for (const t of targetsOf(config, model)) {
      const src = t.kind === "linear" ? be.baseLinearDense(t.weight) : be.weight(t.weight);
      be.copyInto(params.get(t.key).value, src);
      if (t.kind === "linear") be.release(src);
    }
  },
  hooks<T>(config: PartialConfig, model: LlamaConfig, params: ParamStore<T>, weight: number): Hooks<T> {
    if (weight !== 1) throw new PeftError("UNSUPPORTED", `partial fine-tuning replaces weights and cannot be combined with a weight other than 1 (got ${weight})`);
    const linears = new Map<string, LinearHook<T>[]>();
    const norms = new Map<string, NormHook<T>>();
    for (const t of targetsOf(config, model)) {
      const p = params.get(t.key);
      if (t.kind === "linear") linears.set(t.weight, [{ weight: (g) => g.param(p) }]);
      else norms.set(t.weight, { weight: (g) => g.param(p) });
    }
    return { linear: (site) => linears.get(site.weight) ?? [], norm: (name) => norms.get(name) };
  },
  merge: {
    targets: (config, model) => targetsOf(config, model).map((t) => t.weight),
    apply<T>(config: PartialConfig, be: Backend<T>, name: string, W: T, params: ParamStore<T>, model: LlamaConfig): T {
      const t = targetsOf(config, model).find((x) => x.weight === name)!;
      be.copyInto(W, params.get(t.key).value);
      return W;
    },
  },
};
