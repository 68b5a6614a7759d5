/**
 * PEFT's add_weighted_adapter for LoRA (tuners/lora/model.py), as PEFT computes it:
 *  - "cat":    A = [w₁s₁A₁; w₂s₂A₂; …], B = [B₁ B₂ …] — rank Σrᵢ, exactly Σ wᵢ·sᵢ·Bᵢ·Aᵢ;
 *  - "linear": A = Σ sign(wᵢsᵢ)·√|wᵢsᵢ|·Aᵢ, B = Σ √|wᵢsᵢ|·Bᵢ (equal ranks; the cross terms make it
 *              an approximation, as in PEFT);
 *  - "svd":    the rank-`svd_rank` truncated SVD (default max rᵢ) of Σ (wᵢsᵢ)·(sᵢ·Bᵢ·Aᵢ) — PEFT
 *              multiplies its delta weights, which already carry the scaling, by weight·scaling.
 * The new adapter's config is the first one's with r = lora_alpha = the new rank (scaling 1) and
 * the union of the target modules; modules an adapter lacks contribute nothing.
 */
import { PeftError } from "../errors.ts";
import { Adapter } from "./adapter.ts";
import type { LoraConfig } from "./lora/config.ts";
import { loraScale } from "./lora/config.ts";
import { loraKeys } from "./lora/method.ts";
import type { PeftModel } from "./peft_model.ts";
import { type LoraTarget, resolveTargets } from "./targets.ts";
import { truncatedSvdOfProduct } from "../util/linalg.ts";

export type CombinationType = "cat" | "linear" | "svd";

interface Source {
  config: LoraConfig;
  weight: number;
  scale: number;
  targets: Map<string, LoraTarget>;
  adapter: Adapter;
}

const id = (t: { layer: number; module: string }) => `${t.layer}.${t.module}`;

export async function addWeightedAdapter(
  peft: PeftModel,
  adapters: string[],
  weights: number[],
  name: string,
  o: { combinationType?: CombinationType; svdRank?: number } = {},
): Promise<Adapter> {
  if (!adapters.length || adapters.length !== weights.length) {
    throw new PeftError("BAD_PARAMETER", `add_weighted_adapter: give one weight per adapter (${adapters.length} adapters, ${weights.length} weights)`);
  }
  let type: CombinationType = o.combinationType ?? "svd";
  if (!["cat", "linear", "svd"].includes(type)) throw new PeftError("BAD_PARAMETER", `combination_type must be "cat", "linear" or "svd", got ${JSON.stringify(type)}`);
  if (adapters.length === 1) type = "linear"; // PEFT: one adapter can only be merged linearly
  const sources: Source[] = adapters.map((n, i) => {
    const a = peft.adapter(n);
    const c = a.config as LoraConfig;
    if (a.peftType !== "LORA" || c.use_dora) throw new PeftError("UNSUPPORTED", `add_weighted_adapter combines plain LoRA adapters; ${n} is ${a.method.describe(a.config)}`);
    if (!Number.isFinite(weights[i])) throw new PeftError("BAD_PARAMETER", `add_weighted_adapter: weight of ${n} must be a finite number, got ${weights[i]}`);
    return { config: c, weight: weights[i], scale: loraScale(c), targets: new Map(resolveTargets(c, peft.config).map((t) => [id(t), t])), adapter: a };
  });
  const kinds = new Set(sources.map((s) => typeof s.config.target_modules));
  if (kinds.size > 1) throw new PeftError("UNSUPPORTED", "add_weighted_adapter: target_modules mixes lists and regex strings (PEFT refuses this too)");
  const ranks = sources.map((s) => s.config.r);
  if (type === "linear" && new Set(ranks).size > 1) throw new PeftError("UNSUPPORTED", `combination_type "linear" needs adapters of one rank (got ${ranks.join(", ")})`);
  const rank = type === "cat" ? ranks.reduce((a, b) => a + b, 0) : type === "svd" ? (o.svdRank ?? Math.max(...ranks)) : ranks[0];
  if (!Number.isInteger(rank) || rank < 1) throw new PeftError("BAD_PARAMETER", `svd_rank must be a positive integer, got ${o.svdRank}`);

  const first = sources[0].config;
  const layers = JSON.stringify(first.layers_to_transform);
  if (sources.some((s) => JSON.stringify(s.config.layers_to_transform) !== layers)) {
    // PEFT copies the first config's layers_to_transform, dropping the others' layers silently; refuse instead.
    throw new PeftError("UNSUPPORTED", "add_weighted_adapter: the adapters have different layers_to_transform");
  }
  const tm = first.target_modules;
  const target_modules = typeof tm === "string"
    ? sources.map((s) => `(${s.config.target_modules})`).join("|")
    : [...new Set(sources.flatMap((s) => s.config.target_modules as string[]))];
  const config = { ...first, r: rank, lora_alpha: rank, target_modules, alpha_pattern: {}, rank_pattern: {} } as Record<string, unknown>;
  const all = new Map<string, LoraTarget>();
  for (const s of sources) for (const [k, t] of s.targets) all.set(k, t);

  const values = new Map<string, Float32Array>();
  const read = async (s: Source, t: LoraTarget) => {
    const k = loraKeys(t);
    return { A: await peft.gpu.readF32(s.adapter.params.get(k.A)!.value), B: await peft.gpu.readF32(s.adapter.params.get(k.B)!.value) };
  };
  for (const t of all.values()) {
    const out = t.outFeatures, inn = t.inFeatures;
    const A = new Float32Array(rank * inn), B = new Float32Array(out * rank);
    const present = sources.filter((s) => s.targets.has(id(t)));
    if (type === "cat") {
      let row = 0;
      for (const s of present) {
        const f = await read(s, t), r = s.config.r, c = s.weight * s.scale;
        for (let i = 0; i < r * inn; i++) A[row * inn + i] = f.A[i] * c;
        for (let o2 = 0; o2 < out; o2++) for (let j = 0; j < r; j++) B[o2 * rank + row + j] = f.B[o2 * r + j];
        row += r;
      }
    } else if (type === "linear") {
      for (const s of present) {
        const f = await read(s, t), c = s.weight * s.scale, root = Math.sqrt(Math.abs(c));
        for (let i = 0; i < A.length; i++) A[i] += Math.sign(c || 1) * root * f.A[i];
        for (let i = 0; i < B.length; i++) B[i] += root * f.B[i];
      }
    } else {
      // Σ (w·s)·(s·B·A) as one low-rank product [out, R]·[R, in]
      const R = present.reduce((n, s) => n + s.config.r, 0);
      const Bc = new Float64Array(out * R), Ac = new Float64Array(R * inn);
      let col = 0;
      for (const s of present) {
        const f = await read(s, t), r = s.config.r, c = s.weight * s.scale * s.scale;
        for (let o2 = 0; o2 < out; o2++) for (let j = 0; j < r; j++) Bc[o2 * R + col + j] = c * f.B[o2 * r + j];
        for (let i = 0; i < r * inn; i++) Ac[col * inn + i] = f.A[i];
        col += r;
      }
      const svd = truncatedSvdOfProduct(Bc, Ac, out, R, inn, rank);
      A.set(svd.A);
      B.set(svd.B);
    }
    const k = loraKeys(t);
    values.set(k.A, A);
    values.set(k.B, B);
  }
  return peft.attach(Adapter.fromValues(peft.llama.backend(), peft.config, name, config, values));
}
