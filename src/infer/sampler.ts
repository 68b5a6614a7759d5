/**
 * Next-token sampling on the host from one row of logits: greedy (temperature 0), temperature,
 * top-k, top-p (nucleus), with a seeded PRNG so the same seed gives the same text.
 * Order follows llama.cpp / HF: temperature -> top-k -> softmax -> top-p -> draw.
 */
import { PeftError } from "../errors.ts";

export interface SamplingOptions {
  /** 0 = greedy. Default 0.8. */
  temperature?: number;
  /** 0 = off. */
  topK?: number;
  /** 1 = off. */
  topP?: number;
  seed?: number;
}

export function validateSampling(o: SamplingOptions): Required<SamplingOptions> {
  const t = o.temperature ?? 0.8, k = o.topK ?? 0, p = o.topP ?? 1, seed = o.seed ?? Date.now() % 2 ** 31;
  if (!Number.isFinite(t) || t < 0) throw new PeftError("BAD_PARAMETER", `temperature must be a number >= 0, got ${o.temperature}`);
  if (!Number.isInteger(k) || k < 0) throw new PeftError("BAD_PARAMETER", `topK must be an integer >= 0, got ${o.topK}`);
  if (!Number.isFinite(p) || p <= 0 || p > 1) throw new PeftError("BAD_PARAMETER", `topP must be in (0, 1], got ${o.topP}`);
  if (!Number.isInteger(seed)) throw new PeftError("BAD_PARAMETER", `seed must be an integer, got ${o.seed}`);
  return { temperature: t, topK: k, topP: p, seed };
}

/** mulberry32: tiny, fast, seeded. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

export class Sampler {
  private readonly o: Required<SamplingOptions>;
  private readonly random: () => number;
  constructor(options: SamplingOptions) {
    this.o = validateSampling(options);
    this.random = seededRandom(this.o.seed);
  }

  sample(logits: ArrayLike<number>): number {
    const { temperature, topK, topP } = this.o;
    if (temperature === 0) return argmax(logits);
    const n = logits.length;
    let idx = Array.from({ length: n }, (_, i) => i);
    idx.sort((a, b) => logits[b] - logits[a]);
    if (topK > 0 && topK < n) idx = idx.slice(0, topK);
    const max = logits[idx[0]];
    const probs = idx.map((i) => Math.exp((logits[i] - max) / temperature));
    let sum = probs.reduce((a, b) => a + b, 0);
    let keep = probs.length;
    if (topP < 1) {
      let acc = 0;
      for (let j = 0; j < probs.length; j++) {
        acc += probs[j] / sum;
        if (acc >= topP) {
          keep = j + 1;
          break;
        }
      }
      sum = probs.slice(0, keep).reduce((a, b) => a + b, 0);
    }
    let u = this.random() * sum;
    for (let j = 0; j < keep; j++) {
      u -= probs[j];
      if (u <= 0) return idx[j];
    }
    return idx[keep - 1];
  }
}
