/**
 * Evaluation of a model, with or without an adapter, on a text or JSONL file: mean loss per
 * scored token, perplexity, tokens and tokens/s, with the masks training uses (JSONL: only the
 * completion / assistant tokens; plain text: every token once, overlapping windows included).
 */
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import { evalLoss, type TrainBatch } from "../model/llama_train.ts";
import type { LlamaGpu } from "../model/llama.ts";
import type { PeftModel } from "../peft/peft_model.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { type Batch, type DataOptions, type DatasetStats, evalBatches, type Example, loadEvalSet } from "./data.ts";

/** Sums a per-row loss pass over batches: loss sum, scored tokens, tokens run. */
export async function lossOver(gpu: Gpu, batches: readonly Batch[], pass: (b: TrainBatch, batch: Batch) => Tensor): Promise<{ sum: number; lossTokens: number; tokens: number }> {
  let sum = 0, lossTokens = 0, tokens = 0;
  for (const b of batches) {
    const t = pass({ B: b.rows, T: b.seqLen, inputs: b.input, targets: b.target }, b);
    for (const v of await gpu.readF32(t)) sum += v;
    t.release();
    lossTokens += b.lossTokens;
    tokens += b.rows * b.seqLen;
  }
  return { sum, lossTokens, tokens };
}

export interface EvalSetOptions extends Omit<DataOptions, "evalFraction" | "seed"> {
  /** Sequences per forward pass (default 8). */
  batchSize?: number;
}

export interface EvalResult {
  /** Mean cross-entropy per scored token (nats). */
  loss: number;
  perplexity: number;
  /** Tokens that carry loss. */
  lossTokens: number;
  /** Tokens run through the model (padding included). */
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
}

/** What evaluation needs of a model (the api's Model satisfies it). */
export interface EvaluableModel {
  readonly gpu: Gpu;
  readonly llama: LlamaGpu;
  readonly peft: PeftModel;
  readonly tokenizer: Tokenizer;
  exclusive<T>(fn: () => Promise<T> | T): Promise<T>;
}

/** The evaluation examples of a file (load once, evaluate several adapters on them). */
export async function loadEvalExamples(model: EvaluableModel, data: string, o: EvalSetOptions): Promise<{ examples: Example[]; stats: DatasetStats }> {
  const ds = await loadEvalSet(data, model.tokenizer, o);
  return { examples: ds.eval, stats: ds.stats };
}

/** Mean loss of the model with `adapter` (none: the base) over `examples`. */
export async function evaluateExamples(model: EvaluableModel, examples: readonly Example[], o: { adapter?: string; batchSize?: number } = {}): Promise<EvalResult> {
  return await model.exclusive(async () => {
    const hooks = model.peft.hooksFor(o.adapter ?? []);
    const t0 = performance.now();
    const s = await lossOver(model.gpu, evalBatches(examples, o.batchSize ?? 8), (b) => evalLoss(model.llama, hooks, b));
    const seconds = (performance.now() - t0) / 1000;
    const loss = s.lossTokens ? s.sum / s.lossTokens : NaN;
    return { loss, perplexity: Math.exp(loss), lossTokens: s.lossTokens, tokens: s.tokens, seconds, tokensPerSecond: s.tokens / seconds };
  });
}

/** Loads `data` as evaluation examples and evaluates the model (with `adapter`) on them. */
export async function evaluate(model: EvaluableModel, data: string, o: EvalSetOptions & { adapter?: string }): Promise<EvalResult> {
  const { examples } = await loadEvalExamples(model, data, o);
  return await evaluateExamples(model, examples, o);
}
