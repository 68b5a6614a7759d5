/**
 * LoRA (Hu et al. 2021) with rsLoRA scaling and DoRA (Liu et al. 2024), as PEFT's lora tuner:
 *   y = W·x + s·B·A·drop(x),  s = lora_alpha / r (rsLoRA: / √r)
 * DoRA (use_dora) rescales each output row by a trained magnitude over the row norm of the
 * adapted weight, the norm detached from the gradient (DoRA §4.3, PEFT's DoraLinearLayer):
 *   y = W·x + (m/‖W + s·B·A‖ − 1)·W·x' + (m/‖W + s·B·A‖)·s·B·A·x'
 * where x' = drop(x) (PEFT recomputes the base output on the dropped input while training with
 * dropout; without dropout x' = x and this is (m/‖·‖)⊙(W·x + s·B·A·x)).
 * On disk: lora_A.weight [r, in], lora_B.weight [out, r], lora_magnitude_vector [out]; q/k
 * lora_B rows and magnitudes in HF order.
 */
import { PeftError } from "../../errors.ts";
import type { Backend } from "../../model/backend.ts";
import { ALL_LINEAR_MODULES, ggufLinearName, isQKModule, type LlamaConfig } from "../../model/config.ts";
import type { Graph, Param, V } from "../../model/graph.ts";
import type { Hooks, LinearHook, LinearOutputContext } from "../../model/sites.ts";
import { deriveSeed } from "../../util/rng.ts";
import { linearPath, peftKey } from "../keys.ts";
import type { MergeRule, ParamLayout, ParamStore, PeftMethod } from "../method.ts";
import { type LoraTarget, resolveTargets } from "../targets.ts";
import { type LoraConfig, loraScale, normalizeLoraConfig } from "./config.ts";
import { initLoraWeights } from "./init.ts";

export const loraKeys = (t: { layer: number; module: string }) => {
  const path = linearPath(t.layer, t.module);
  return { A: peftKey(path, "lora_A.weight"), B: peftKey(path, "lora_B.weight"), m: peftKey(path, "lora_magnitude_vector") };
};

const isQK = isQKModule;
const weightName = (t: LoraTarget) => ggufLinearName(t.module, t.layer);

/** Row norms ‖W + s·B·A‖ of the adapted weight (a constant for the graph: DoRA detaches it). */
function adaptedRowNorms<T>(be: Backend<T>, weight: string, A: T, B: T, scale: number, t: LoraTarget, r: number): T {
  const W = be.baseLinearDense(weight);
  be.matmul(B, A, { M: t.outFeatures, N: t.inFeatures, K: r, alpha: scale }, W);
  const n = be.rowNorms(W, t.outFeatures, t.inFeatures);
  be.release(W);
  return n;
}

function loraHook<T>(config: LoraConfig, t: LoraTarget, p: { A: Param<T>; B: Param<T>; m?: Param<T> }, scale: number): LinearHook<T> {
  const moduleIndex = ALL_LINEAR_MODULES.indexOf(t.module);
  const dropout = config.lora_dropout;
  const seedOf = (g: Graph<T>) => deriveSeed(g.seed, t.layer, moduleIndex);
  if (!p.m) {
    return {
      additive: true,
      lowRank: { A: p.A.value, B: p.B.value, rank: config.r, scale },
      output(g: Graph<T>, y: V<T>, ctx: LinearOutputContext<T>): V<T> {
        const A = g.param(p.A), B = g.param(p.B);
        const xd = g.dropout(ctx.x, dropout, seedOf(g));
        const ax = g.matmul(xd, A, { transB: true });
        g.free(xd);
        const out = g.matmulAdd(y, ax, B, { transB: true, alpha: scale });
        g.free(ax);
        return out;
      },
    };
  }
  const magnitude = p.m;
  return {
    needsBase: true,
    output(g: Graph<T>, y: V<T>, ctx: LinearOutputContext<T>): V<T> {
      const A = g.param(p.A), B = g.param(p.B), m = g.param(magnitude);
      const norms = g.input(adaptedRowNorms(g.be, ctx.site.weight, p.A.value, p.B.value, scale, t, config.r));
      const mn = g.div(m, norms); // m / ‖W + s·B·A‖, the norm detached
      g.free(norms);
      const dropped = g.training && dropout > 0;
      const xd = g.dropout(ctx.x, dropout, seedOf(g));
      const ax = g.matmul(xd, A, { transB: true });
      let out: V<T>;
      if (!dropped && y === ctx.yBase) {
        // The usual case: (m/n)·(W·x + s·B·A·x).
        const full = g.matmulAdd(y, ax, B, { transB: true, alpha: scale });
        out = g.mulCols(full, mn);
        g.free(full);
      } else {
        const base = dropped ? g.baseLinear(xd, ctx.site.weight) : g.keep(ctx.yBase);
        const full = g.matmulAdd(g.keep(base), ax, B, { transB: true, alpha: scale });
        const scaled = g.mulCols(full, mn);
        g.free(full);
        const delta = g.axpy(scaled, base, -1);
        g.free(scaled);
        g.free(base);
        out = g.add(y, delta);
        g.free(y);
        g.free(delta);
      }
      for (const v of [xd, ax, mn]) g.free(v);
      return out;
    },
  };
}

/**
 * Refuses a quantized base for methods that read base weights densely, naming the weight, its
 * format and the way out (as for a QLoRA base: we do not dequantize a full copy behind the user's back).
 */
export function requireDenseBase<T>(be: Backend<T>, weights: string[], what: string): void {
  const q = weights.find((w) => !be.baseLinearIsDense(w));
  if (!q) return;
  const format = be.baseLinearFormat(q);
  const fourBit = format === "nf4" || format === "fp4";
  const wayOut = fourBit
    ? "load the model without quantize"
    : "load the model with dequantize: true (--dequantize) to expand the GGUF's quantized tensors to f32";
  throw new PeftError("UNSUPPORTED", `${what} is not supported on a quantized base (${q} is kept ${fourBit ? `4-bit ${format}` : format}); ${wayOut}, or use plain LoRA`);
}

function targetsOf(config: LoraConfig, model: LlamaConfig): LoraTarget[] {
  return resolveTargets(config, model);
}

const mergeRule: MergeRule<LoraConfig> = {
  targets: (config, model) => targetsOf(config, model).map(weightName),
  apply<T>(config: LoraConfig, be: Backend<T>, name: string, W: T, params: ParamStore<T>, model: LlamaConfig): T {
    const t = targetsOf(config, model).find((x) => weightName(x) === name)!;
    const k = loraKeys(t);
    const scale = loraScale(config);
    const A = params.get(k.A).value, B = params.get(k.B).value;
    if (!config.use_dora) {
      be.matmul(B, A, { M: t.outFeatures, N: t.inFeatures, K: config.r, alpha: scale }, W);
      return W;
    }
    // W' = (m / ‖W + s·B·A‖) ⊙rows (W + s·B·A), the norm of the weight being merged into (PEFT's merge).
    be.matmul(B, A, { M: t.outFeatures, N: t.inFeatures, K: config.r, alpha: scale }, W);
    const n = be.rowNorms(W, t.outFeatures, t.inFeatures);
    const f = be.div(params.get(k.m).value, n);
    const out = be.mulRows(W, f, t.outFeatures, t.inFeatures);
    be.release(n);
    be.release(f);
    return out;
  },
};

export const LORA: PeftMethod<LoraConfig> = {
  peftType: "LORA",
  normalize: (user, model) => normalizeLoraConfig(user, model),
  label: (c) => (c.use_dora ? "DoRA" : "LoRA"),
  describe: (c) => `${c.use_dora ? "DoRA" : "LoRA"} r=${c.r} alpha=${c.lora_alpha}${c.use_rslora ? " (rsLoRA)" : ""}`,

  layout(config: LoraConfig, model: LlamaConfig): ParamLayout[] {
    const out: ParamLayout[] = [];
    for (const t of targetsOf(config, model)) {
      const k = loraKeys(t);
      out.push({ key: k.A, shape: [config.r, t.inFeatures] });
      out.push({ key: k.B, shape: [t.outFeatures, config.r], qkRows: isQK(t.module) });
      if (config.use_dora) out.push({ key: k.m, shape: [t.outFeatures], qkRows: isQK(t.module) });
    }
    return out;
  },

  init(config: LoraConfig, model: LlamaConfig, seed: number): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    for (const t of targetsOf(config, model)) {
      const w = initLoraWeights(t, config.r, config.init_lora_weights, seed);
      const k = loraKeys(t);
      out.set(k.A, w.A);
      out.set(k.B, w.B);
      // DoRA magnitudes start at ‖W + s·B·A‖ (initFromBase fills them in on the device).
      if (config.use_dora) out.set(k.m, new Float32Array(t.outFeatures));
    }
    return out;
  },

  initFromBase<T>(config: LoraConfig, model: LlamaConfig, be: Backend<T>, params: ParamStore<T>): void {
    if (!config.use_dora) return;
    requireDenseBase(be, targetsOf(config, model).map(weightName), "use_dora (DoRA needs each target's dense weight for its row norms)");
    const scale = loraScale(config);
    for (const t of targetsOf(config, model)) {
      const k = loraKeys(t);
      const n = adaptedRowNorms(be, weightName(t), params.get(k.A).value, params.get(k.B).value, scale, t, config.r);
      be.copyInto(params.get(k.m).value, n);
      be.release(n);
    }
  },

  hooks<T>(config: LoraConfig, model: LlamaConfig, params: ParamStore<T>, weight: number): Hooks<T> {
    if (config.use_dora && weight !== 1) {
      throw new PeftError("UNSUPPORTED", `DoRA adapters cannot be combined with a weight other than 1 (got ${weight}): the magnitude is not a delta`);
    }
    const scale = loraScale(config) * weight;
    const bySite = new Map<string, LinearHook<T>[]>();
    for (const t of targetsOf(config, model)) {
      const k = loraKeys(t);
      const hook = loraHook(config, t, { A: params.get(k.A), B: params.get(k.B), m: config.use_dora ? params.get(k.m) : undefined }, scale);
      bySite.set(weightName(t), [hook]);
    }
    return { linear: (site) => bySite.get(site.weight) ?? [], norm: () => undefined };
  },

  merge: mergeRule,
};

