/**
 * Hooks for a batch whose rows belong to different adapters (PEFT's mixed-batch forward): the
 * block runs its base linears once over all rows, and each group of rows gets its own hooks on
 * its own rows — input transforms, output hooks (LoRA, DoRA, (IA)³, biases) and residual modules
 * (bottleneck adapters) — written back in place of those rows. Low-rank output hooks (LoRA) of
 * every group at a site can go to one gathered kernel instead (`lowRank`, given by the caller
 * that owns a bank of adapter weights).
 *
 * Groups whose hooks replace a weight or a norm weight cannot share the base computation; the
 * scheduler runs them as batches of their own (`sharesBaseWeights` tells which).
 */
import { PeftError } from "../errors.ts";
import type { Graph, V } from "./graph.ts";
import type { Branch, Hooks, LinearHook, LinearSite } from "./sites.ts";
import type { LlamaConfig } from "./config.ts";
import { linearModules } from "./config.ts";
import { headSite, linearSite } from "./block.ts";

export interface RowGroup<T> {
  row0: number;
  rows: number;
  hooks: Hooks<T>;
}

/** One low-rank hook on a run of rows, for a gathered kernel. */
export interface LowRankRun<T> {
  row0: number;
  rows: number;
  lowRank: NonNullable<LinearHook<T>["lowRank"]>;
}

/** Adds every run's low-rank delta over x to y (consumes y, returns the sum). */
export type LowRankBatch<T> = (g: Graph<T>, y: V<T>, x: V<T>, site: LinearSite, runs: LowRankRun<T>[]) => V<T>;

/** True when the hooks leave every base weight and norm weight as it is (so rows may share them). */
export function sharesBaseWeights<T>(h: Hooks<T>, c: LlamaConfig): boolean {
  for (let l = 0; l < c.nLayers; l++) {
    if (h.norm(`blk.${l}.attn_norm.weight`) || h.norm(`blk.${l}.ffn_norm.weight`)) return false;
    for (const m of linearModules(c)) if (h.linear(linearSite(c, l, m)).some((x) => x.weight)) return false;
  }
  return !h.norm("output_norm.weight") && !h.linear(headSite(c)).some((x) => x.weight);
}

/**
 * The low-rank runs at a site: every group whose output hooks there are all low-rank (LoRA), one
 * run per hook. Those groups' deltas go to the gathered kernel; the other groups' hooks run on
 * their rows.
 */
export function lowRankRuns<T>(groups: readonly RowGroup<T>[], site: LinearSite): LowRankRun<T>[] {
  const runs: LowRankRun<T>[] = [];
  for (const gr of groups) {
    if (gr.rows <= 0) continue;
    const outs = gr.hooks.linear(site).filter((h) => h.output);
    if (!outs.length || !outs.every((h) => h.lowRank)) continue;
    for (const h of outs) runs.push({ row0: gr.row0, rows: gr.rows, lowRank: h.lowRank! });
  }
  return runs;
}

/** The hooks of a batch of row groups (contiguous, in row order). Virtual tokens are the caller's business. */
export function rowGroupHooks<T>(groups: readonly RowGroup<T>[], lowRank?: LowRankBatch<T>): Hooks<T> {
  const active = groups.filter((gr) => gr.rows > 0);
  const cache = new Map<string, LinearHook<T>[]>();
  return {
    linear(site) {
      let hs = cache.get(site.weight);
      if (!hs) cache.set(site.weight, hs = siteHooks(active, site, lowRank));
      return hs;
    },
    norm(name) {
      if (active.some((gr) => gr.hooks.norm(name))) {
        throw new PeftError("ADAPTER_CONFLICT", `a batch of several adapters cannot replace the norm weight ${name}: run that adapter's rows alone`);
      }
      return undefined;
    },
    residual: active.some((gr) => gr.hooks.residual)
      ? (g, layer, branch, x, h) => residual(g, active, layer, branch, x, h)
      : undefined,
    residualAt: (layer, branch) => active.some((gr) => gr.hooks.residual && (gr.hooks.residualAt?.(layer, branch) ?? true)),
  };
}

function siteHooks<T>(groups: readonly RowGroup<T>[], site: LinearSite, lowRank?: LowRankBatch<T>): LinearHook<T>[] {
  const per = groups.map((gr) => ({ gr, hooks: gr.hooks.linear(site) })).filter((x) => x.hooks.length);
  if (!per.length) return [];
  if (per.some((x) => x.hooks.some((h) => h.weight))) {
    throw new PeftError("ADAPTER_CONFLICT", `a batch of several adapters cannot replace the weight ${site.weight}: run that adapter's rows alone`);
  }
  const inputs = per.filter((x) => x.hooks.some((h) => h.input));
  const outputs = per.filter((x) => x.hooks.some((h) => h.output));
  const hook: LinearHook<T> = {
    additive: outputs.every((x) => x.hooks.every((h) => !h.output || h.additive)),
    needsBase: outputs.some((x) => x.hooks.some((h) => h.needsBase)),
  };
  if (inputs.length) {
    hook.input = (g, x, s) => {
      const parts = inputs.map(({ gr, hooks }) => {
        let xs = g.sliceRows(x, gr.row0, gr.rows);
        for (const h of hooks) if (h.input) xs = h.input(g, xs, s);
        return { row0: gr.row0, v: xs };
      });
      const out = g.replaceRows(x, parts);
      for (const p of parts) g.free(p.v);
      g.free(x);
      return out;
    };
  }
  if (outputs.length) {
    hook.output = (g, y, ctx) => {
      // Groups whose every output hook is low-rank go to the gathered kernel together (lowRankRuns).
      const gathered = lowRank && !g.training ? outputs.filter((x) => x.hooks.every((h) => !h.output || h.lowRank)) : [];
      const sliced = outputs.filter((x) => !gathered.includes(x));
      const parts = sliced.map(({ gr, hooks }) => {
        const xs = g.sliceRows(ctx.x, gr.row0, gr.rows);
        let ys = g.sliceRows(y, gr.row0, gr.rows);
        const yBase = hook.needsBase ? g.sliceRows(ctx.yBase, gr.row0, gr.rows) : ys;
        for (const h of hooks) if (h.output) ys = h.output(g, ys, { site: ctx.site, x: xs, yBase });
        if (yBase !== ys && hook.needsBase) g.free(yBase);
        g.free(xs);
        return { row0: gr.row0, v: ys };
      });
      let out = y;
      if (parts.length) {
        out = g.replaceRows(y, parts);
        for (const p of parts) g.free(p.v);
        g.free(y);
      }
      if (gathered.length) out = lowRank!(g, out, ctx.x, ctx.site, lowRankRuns(gathered.map((x) => x.gr), ctx.site));
      return out;
    };
  }
  return [hook];
}

function residual<T>(g: Graph<T>, groups: readonly RowGroup<T>[], layer: number, branch: Branch, x: V<T>, h: V<T>): V<T> {
  const parts = groups.filter((gr) => gr.hooks.residual && (gr.hooks.residualAt?.(layer, branch) ?? true)).map((gr) => {
    const xs = g.sliceRows(x, gr.row0, gr.rows);
    const hs = gr.hooks.residual!(g, layer, branch, xs, g.sliceRows(h, gr.row0, gr.rows));
    g.free(xs);
    return { row0: gr.row0, v: hs };
  });
  if (!parts.length) return h;
  const out = g.replaceRows(h, parts);
  for (const p of parts) g.free(p.v);
  g.free(h);
  return out;
}
