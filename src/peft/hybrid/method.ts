/**
 * Hybrids: several PEFT methods in one adapter, trained jointly (He et al. 2022's MAM adapter is
 * prefix tuning + a parallel bottleneck adapter; UniPELT mixes LoRA, prefix tuning and adapters).
 * Config: { peft_type: "HYBRID", components: { <name>: <a method's config>, … } }, e.g.
 *   { peft_type: "HYBRID", components: { prefix: { peft_type: "PREFIX_TUNING", num_virtual_tokens: 16 },
 *                                        adapter: { peft_type: "BOTTLENECK", config: "par_bn" } } }
 * The directory is one adapter_config.json holding that config (each component's normalized
 * config) and one adapter_model.safetensors whose keys are "<component>/<the component's own key>".
 * Hooks stack in the components' order; components that add virtual tokens: at most one.
 * Not mergeable as a whole (merge the mergeable parts as their own adapters).
 */
import { PeftError } from "../../errors.ts";
import type { Backend } from "../../model/backend.ts";
import type { LlamaConfig } from "../../model/config.ts";
import type { Param } from "../../model/graph.ts";
import { type Hooks, stackHooks } from "../../model/sites.ts";
import { ConfigReader } from "../config_common.ts";
import type { InitContext, MethodConfig, ParamLayout, ParamStore, PeftMethod } from "../method.ts";

export interface HybridConfig extends MethodConfig {
  peft_type: "HYBRID";
  components: Record<string, MethodConfig>;
}

type Lookup = (peftType: unknown, where: string) => PeftMethod<MethodConfig>;

/** The hybrid method over the registry's other methods (passed in: the registry lists this one too). */
export function hybridMethod(methodFor: Lookup): PeftMethod<HybridConfig> {
  const parts = (c: HybridConfig) => Object.entries(c.components).map(([name, cfg]) => ({ name, cfg, method: methodFor(cfg.peft_type, `HYBRID component ${name}`) }));
  const scoped = <T>(name: string, store: ParamStore<T>): ParamStore<T> => ({ get: (k: string) => store.get(`${name}/${k}`) });

  return {
    peftType: "HYBRID",
    normalize(user: Record<string, unknown>, model?: LlamaConfig): HybridConfig {
      const c = new ConfigReader("hybrid", "HYBRID_CONFIG", "HYBRID", user, { components: null });
      const comps = c.u.components;
      if (!comps || typeof comps !== "object" || Array.isArray(comps) || !Object.keys(comps).length) {
        c.bad("components", `must be an object of named method configs, got ${JSON.stringify(comps)}`);
      }
      const components: Record<string, MethodConfig> = {};
      for (const [name, cfg] of Object.entries(comps as Record<string, unknown>)) {
        if (!/^[A-Za-z0-9_-]{1,32}$/.test(name)) c.bad(`components.${name}`, "names must be 1-32 characters of A-Z a-z 0-9 _ -");
        if (!cfg || typeof cfg !== "object") c.bad(`components.${name}`, `must be a method config, got ${JSON.stringify(cfg)}`);
        const pt = (cfg as Record<string, unknown>).peft_type ?? "LORA";
        if (String(pt).toUpperCase() === "HYBRID") c.bad(`components.${name}`, "cannot be a hybrid itself");
        try {
          components[name] = methodFor(pt, `HYBRID component ${name}`).normalize(cfg as Record<string, unknown>, model);
        } catch (e) {
          if (e instanceof PeftError) throw new PeftError(e.code, `hybrid config: components.${name}: ${e.message}`, { cause: e });
          throw e;
        }
      }
      return { ...c.extras(), ...c.common(), peft_type: "HYBRID", components };
    },
    label: (c) => parts(c).map((p) => p.method.label(p.cfg)).join(" + "),
    describe: (c) => `hybrid of ${parts(c).map((p) => `${p.name}: ${p.method.describe(p.cfg)}`).join("; ")}`,
    layout: (c, model): ParamLayout[] =>
      parts(c).flatMap((p) => p.method.layout(p.cfg, model).map((l) => ({ ...l, key: `${p.name}/${l.key}` }))),
    init(c, model, seed) {
      const out = new Map<string, Float32Array>();
      parts(c).forEach((p, i) => {
        for (const [k, v] of p.method.init(p.cfg, model, seed * 31 + i)) out.set(`${p.name}/${k}`, v);
      });
      return out;
    },
    initFromBase<T>(c: HybridConfig, model: LlamaConfig, be: Backend<T>, params: ParamStore<T>, ctx: InitContext): void {
      for (const p of parts(c)) p.method.initFromBase?.(p.cfg, model, be, scoped(p.name, params), ctx);
    },
    hooks<T>(c: HybridConfig, model: LlamaConfig, params: ParamStore<T>, weight: number): Hooks<T> {
      return stackHooks(parts(c).map((p) => p.method.hooks(p.cfg, model, scoped(p.name, params), weight)));
    },
    export: {
      config: (c) => ({
        ...c,
        components: Object.fromEntries(parts(c).map((p) => [p.name, p.method.export ? p.method.export.config(p.cfg) : p.cfg])),
      }),
      values<T>(c: HybridConfig, model: LlamaConfig, params: ParamStore<T>, be: Backend<T>) {
        const out = new Map<string, T>();
        for (const p of parts(c)) {
          const store = scoped(p.name, params);
          if (p.method.export) {
            for (const [k, v] of p.method.export.values(p.cfg, model, store, be)) out.set(`${p.name}/${k}`, v);
          } else {
            for (const l of p.method.layout(p.cfg, model)) out.set(`${p.name}/${l.key}`, be.copy((store.get(l.key) as Param<T>).value));
          }
        }
        return out;
      },
    },
    cannotMerge: "a hybrid merges part by part: save its mergeable components as their own adapters",
  };
}
