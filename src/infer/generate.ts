/**
 * Text generation: prefill the prompt in one pass, then decode one token per pass from the
 * KV cache, sampling on the host. Streams text pieces that never split a UTF-8 character.
 * Stops at EOS, at a stop string, at maxTokens, or at the context length (reported, not thrown).
 */
import { PeftError } from "../errors.ts";
import type { LlamaGpu } from "../model/llama.ts";
import type { Tensor } from "../gpu/gpu.ts";
import { type Hooks, NO_HOOKS, virtualTokens } from "../model/sites.ts";
import { sampleOnGpu } from "../kernels/sample.ts";
import { Sampler, type SamplingOptions, validateSampling } from "./sampler.ts";

/** What generation needs of a tokenizer (src/tokenizer's Tokenizer satisfies it). */
export interface GenerationTokenizer {
  encode(text: string, o?: { addSpecial?: boolean; parseSpecial?: boolean }): number[];
  createStreamDecoder(o?: { after?: ArrayLike<number> }): { push(id: number): string; flush(): string };
  eosId: number;
  /** Every id that ends generation (EOS, EOT, the family's turn ends); default: eosId alone. */
  eogIds?: readonly number[];
}

export interface GenerateOptions extends SamplingOptions {
  /** Maximum new tokens (default 128). */
  maxTokens?: number;
  /** Stop when the generated text contains one of these (it is not emitted). */
  stop?: string[];
  /** Adapter name to apply (unmerged), or none for the base model (or the model's active adapters). */
  adapter?: string;
  /** Several adapters at once with weights (LoRA deltas scaled by weight), instead of `adapter`. */
  adapters?: readonly { name: string; weight?: number }[];
  /** Add BOS before the prompt (default true, as llama.cpp does for llama vocabs). */
  addBos?: boolean;
  /** Parse special tokens like </s> in the prompt (default false: prompts are untrusted text). */
  parseSpecial?: boolean;
  /** Cancels generation (e.g. client disconnect). */
  signal?: AbortSignal;
}

export type FinishReason = "stop" | "length" | "context" | "abort";

export interface GeneratedPiece {
  /** Token id just sampled. */
  id: number;
  /** Text this token completed (may be "" while a UTF-8 character is incomplete). */
  text: string;
}

export interface GenerationResult {
  promptTokens: number;
  completionTokens: number;
  finishReason: FinishReason;
  prefillMs: number;
  decodeMs: number;
}

/**
 * Generates from prompt ids; yields pieces and returns the result summary.
 * The caller must hold the model exclusively (one KV cache).
 */
export async function* generateTokens(
  llama: LlamaGpu,
  tok: GenerationTokenizer,
  promptIds: number[],
  o: GenerateOptions,
  hooks?: Hooks<Tensor>,
): AsyncGenerator<GeneratedPiece, GenerationResult> {
  const maxTokens = o.maxTokens ?? 128;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new PeftError("BAD_PARAMETER", `maxTokens must be an integer >= 0, got ${o.maxTokens}`);
  const ctx = llama.config.contextLength;
  if (promptIds.length === 0) throw new PeftError("BAD_PARAMETER", "the prompt is empty (no tokens)");
  // Prompt and prefix tuning's virtual tokens occupy the context before the prompt.
  const P = virtualTokens(hooks ?? NO_HOOKS);
  if (P + promptIds.length >= ctx) {
    throw new PeftError(
      "CONTEXT_OVERFLOW",
      `prompt has ${promptIds.length} tokens${P ? ` after the adapter's ${P} virtual tokens` : ""}; the model's context length is ${ctx}`,
    );
  }
  const decoder = tok.createStreamDecoder({ after: promptIds });
  const eog = new Set(tok.eogIds ?? []);
  const stops = (o.stop ?? []).filter((s) => s.length > 0);
  const maxStop = Math.max(0, ...stops.map((s) => s.length));
  let pending = ""; // text held back while it could be the start of a stop string
  let stopHit = false;
  const result: GenerationResult = { promptTokens: promptIds.length, completionTokens: 0, finishReason: "length", prefillMs: 0, decodeMs: 0 };
  const t0 = performance.now();
  const source = gpuSamplable(o)
    ? gpuSampledIds(llama, promptIds, maxTokens, o, hooks)
    : hostSampledIds(llama, promptIds, maxTokens, o, hooks);
  try {
    let ended = true; // the source ran out: context full (or maxTokens reached)
    for (let i = 0; i < maxTokens; i++) {
      if (o.signal?.aborted) {
        result.finishReason = "abort";
        ended = false;
        break;
      }
      const next = await source.next();
      if (next.done) break;
      const id = next.value;
      if (i === 0) result.prefillMs = performance.now() - t0;
      if (id === tok.eosId || eog.has(id)) {
        result.finishReason = "stop";
        ended = false;
        break;
      }
      result.completionTokens++;
      let text = decoder.push(id);
      if (stops.length) {
        pending += text;
        const hit = stops.map((s) => pending.indexOf(s)).filter((k) => k >= 0);
        if (hit.length) {
          const cut = Math.min(...hit);
          if (cut > 0) yield { id, text: pending.slice(0, cut) };
          result.finishReason = "stop";
          stopHit = true;
          ended = false;
          break;
        }
        // Emit all but the tail that might still grow into a stop string.
        const keep = Math.min(pending.length, maxStop - 1);
        text = pending.slice(0, pending.length - keep);
        pending = pending.slice(pending.length - keep);
      }
      yield { id, text };
    }
    if (ended && result.completionTokens < maxTokens) result.finishReason = "context";
  } finally {
    await source.return(undefined);
  }
  const tail = stopHit ? "" : pending + decoder.flush();
  if (tail) yield { id: -1, text: tail };
  result.decodeMs = performance.now() - t0 - result.prefillMs;
  return result;
}

/** Greedy or plain temperature sampling can run on the GPU; top-k / top-p sort on the host. */
function gpuSamplable(o: GenerateOptions): boolean {
  return (o.topK ?? 0) === 0 && (o.topP ?? 1) === 1;
}

/** Tokens per host round trip on the GPU-sampling path (wasted steps after EOS are at most this). */
const GPU_CHUNK = 8;

/** Ids sampled on the host: one forward + readback per token. Ends when the context is full. */
async function* hostSampledIds(llama: LlamaGpu, promptIds: number[], maxTokens: number, o: GenerateOptions, hooks?: Hooks<Tensor>): AsyncGenerator<number> {
  const sampler = new Sampler(o);
  const ctx = llama.config.contextLength;
  let pos = 0, input = promptIds, rows = virtualTokens(hooks ?? NO_HOOKS) + promptIds.length;
  for (let i = 0; i < maxTokens && pos + rows <= ctx; i++) {
    const logitsT = llama.forward(input, pos, { hooks });
    const logits = await llama.gpu.readF32(logitsT);
    logitsT.release();
    pos += rows;
    rows = 1;
    const id = sampler.sample(logits);
    yield id;
    input = [id];
  }
}

/**
 * Ids sampled on the GPU: each step's id feeds the next step's embedding on the GPU, and a chunk
 * of GPU_CHUNK ids is read back at once, so the host round trip (milliseconds on some runtimes)
 * is paid once per chunk instead of once per token.
 */
async function* gpuSampledIds(llama: LlamaGpu, promptIds: number[], maxTokens: number, o: GenerateOptions, hooks?: Hooks<Tensor>): AsyncGenerator<number> {
  const { temperature, seed } = validateSampling(o);
  const gpu = llama.gpu, V = llama.config.vocabSize, ctx = llama.config.contextLength;
  const first = virtualTokens(hooks ?? NO_HOOKS) + promptIds.length; // rows the first step takes
  const next = gpu.tensor([1], "u32"), out = gpu.tensor([GPU_CHUNK], "u32");
  try {
    let pos = 0, made = 0;
    while (made < maxTokens) {
      // Step `made` consumes position pos (the prompt first, then one sampled id per step).
      const room = ctx - first + 1 - made; // steps left before the context is full
      const n = Math.min(GPU_CHUNK, maxTokens - made, room);
      if (n <= 0) return;
      for (let j = 0; j < n; j++) {
        const logits = made + j === 0 ? llama.forward(promptIds, 0, { hooks }) : llama.forwardIds(next, 1, pos, { hooks });
        pos += made + j === 0 ? first : 1;
        sampleOnGpu(gpu, logits, next, out, { V, slot: j, temperature, seed, step: made + j });
        logits.release();
      }
      const ids = await gpu.read(out, n) as Uint32Array;
      made += n;
      for (const id of ids) yield id;
    }
  } finally {
    next.release();
    out.release();
  }
}
