/**
 * The model on the CPU (any family): the one block (block.ts) over the CPU backend, whose ops are the
 * kernels' f64-accumulating references. It is what the WGSL model is tested against (and, with
 * hooks, what each PEFT method's GPU path is tested against), not a production path.
 * Weights use GGUF names and GGUF's q/k row order.
 */
import { PeftError } from "../errors.ts";
import { type BlockContext, blocks, dropVirtualRows, embed, finalNorm, headSite, linear, sequencePositions } from "./block.ts";
import type { LlamaConfig } from "./config.ts";
import { expectedShapes } from "./validate_weights.ts";
import { CpuBackend, host, type HostTensor } from "./cpu_backend.ts";
import { Graph } from "./graph.ts";
import { type Hooks, NO_HOOKS, virtualTokens } from "./sites.ts";
import { crossEntropyReference } from "../kernels/cross_entropy.ts";

export type HostWeights = Map<string, Float32Array>;

/** The CPU backend over host weights (GGUF names, shapes from c's family). */
export function referenceBackend(c: LlamaConfig, w: HostWeights): CpuBackend {
  const shapes = expectedShapes(c);
  const m = new Map<string, HostTensor>();
  for (const [name, data] of w) {
    const shape = shapes.get(name);
    if (!shape) throw new PeftError("MODEL_MISSING_TENSOR", `reference: unknown tensor ${name}`);
    m.set(name, host(shape, data));
  }
  return new CpuBackend(m);
}

function context(c: LlamaConfig, g: Graph<HostTensor>, hooks: Hooks<HostTensor>, B: number, T: number): BlockContext<HostTensor> {
  return { g, config: c, hooks, positions: sequencePositions(hooks, B, T, c) };
}

/** The final norm over the text rows of B sequences (virtual-token rows dropped). */
function textRows(ctx: BlockContext<HostTensor>, ids: HostTensor, B: number) {
  const x = blocks(ctx, embed(ctx, ids, B));
  return finalNorm(ctx, dropVirtualRows(ctx.g, x, ctx.hooks.embedPrefix ? virtualTokens(ctx.hooks) : 0, B));
}

/** Logits [T, V] for `tokens` (positions 0..T-1), exactly as causal attention defines them. */
export function llamaReferenceLogits(c: LlamaConfig, w: HostWeights | CpuBackend, tokens: number[], hooks: Hooks<HostTensor> = NO_HOOKS): Float64Array[] {
  const be = w instanceof CpuBackend ? w : referenceBackend(c, w);
  const g = new Graph(be, { grad: false, training: false, seed: 0 });
  const ctx = context(c, g, hooks, 1, tokens.length);
  const xf = textRows(ctx, be.ids(tokens), 1);
  const logits = linear(ctx, xf, headSite(c)).value.data;
  const V = c.vocabSize;
  return tokens.map((_, t) => Float64Array.from(logits.subarray(t * V, (t + 1) * V)));
}

/**
 * Mean cross-entropy over targets != -100 of B sequences of T tokens, and (with grad) the
 * gradients of every trainable parameter the hooks register, accumulated into their buffers.
 * `training` turns dropout on (same masks as the GPU for the same seed).
 */
export function referenceLoss(
  c: LlamaConfig,
  be: CpuBackend,
  hooks: Hooks<HostTensor>,
  batch: { B: number; T: number; inputs: ArrayLike<number>; targets: ArrayLike<number> },
  o: { grad?: boolean; training?: boolean; seed?: number } = {},
): number {
  const g = new Graph(be, { grad: !!o.grad, training: !!o.training, seed: o.seed ?? 0 });
  const ctx = context(c, g, hooks, batch.B, batch.T);
  const xf = textRows(ctx, be.ids(batch.inputs), batch.B);
  const rows = batch.B * batch.T, V = c.vocabSize;
  const W = be.weight(c.tiedEmbeddings ? "token_embd.weight" : "output.weight");
  const logits = be.matmul(xf.value, W, { M: rows, N: V, K: c.dim, transB: true });
  const targets = Int32Array.from(batch.targets);
  const count = targets.filter((t) => t >= 0).length;
  const { loss, dlogits } = crossEntropyReference(logits.data, targets, { N: rows, V, gradScale: 1 / count });
  let sum = 0;
  for (const l of loss) sum += l;
  if (o.grad) {
    const dxf = be.matmul(host([rows, V], dlogits), W, { M: rows, N: c.dim, K: V });
    g.backward(xf, dxf).releaseAll();
  }
  g.dispose();
  return sum / count;
}
