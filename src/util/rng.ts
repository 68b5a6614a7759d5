/**
 * A small seeded PRNG for everything random in training (LoRA init, data order, dropout seeds).
 * xoshiro128** (Blackman & Vigna): 128 bits of state, fast in 32-bit integer math, and its state
 * is four u32 words, so checkpoints can save it and resume the exact same stream.
 * Seeds are expanded with splitmix32 so nearby seeds (1, 2, 3) give unrelated streams.
 */
import { PeftError } from "../errors.ts";

/** splitmix32 step: a good 32-bit mixer, used to expand seeds and to derive sub-seeds. */
function mix32(x: number): number {
  x = (x + 0x9e3779b9) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

function checkSeed(seed: number, what: string): void {
  if (!Number.isSafeInteger(seed)) throw new PeftError("BAD_SEED", `${what} must be an integer, got ${seed}`);
}

/** Folds a (possibly > 32-bit or negative) safe integer into 32 bits without losing its high part. */
function fold(n: number): number {
  const lo = n >>> 0;
  const hi = Math.floor(n / 4294967296) >>> 0;
  return (lo ^ mix32(hi)) >>> 0;
}

/**
 * A seed for a sub-stream, e.g. deriveSeed(seed, step, layer) for the dropout mask of one layer
 * at one step: same inputs, same seed, and independent of every other (step, layer).
 */
export function deriveSeed(seed: number, ...ints: number[]): number {
  checkSeed(seed, "seed");
  let h = mix32(fold(seed));
  for (const i of ints) {
    checkSeed(i, "deriveSeed component");
    h = mix32((h ^ fold(i)) >>> 0);
  }
  return h;
}

export class Rng {
  private s: Uint32Array;

  constructor(seed: number) {
    checkSeed(seed, "seed");
    this.s = new Uint32Array(4);
    let x = fold(seed);
    for (let i = 0; i < 4; i++) {
      x = mix32(x + i);
      this.s[i] = x;
    }
    // xoshiro must not start from all-zero state (mix32 makes that practically impossible, but be exact).
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  /** The generator's state, JSON-serialisable (four u32 words). */
  state(): number[] {
    return Array.from(this.s);
  }

  /** A generator that continues exactly where the one that produced `state` stopped. */
  static fromState(state: readonly number[]): Rng {
    if (!Array.isArray(state) || state.length !== 4 || !state.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)) {
      throw new PeftError("BAD_RNG_STATE", `rng state must be four u32 words, got ${JSON.stringify(state)}`);
    }
    if (state.every((w) => w === 0)) throw new PeftError("BAD_RNG_STATE", "rng state must not be all zeros");
    const r = new Rng(0);
    r.s.set(state);
    return r;
  }

  /** Next raw u32. */
  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform in [lo, hi). */
  uniformIn(lo: number, hi: number): number {
    return lo + (hi - lo) * this.uniform();
  }

  /** Uniform integer in [0, n), unbiased (rejection sampling on 32 bits). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 0x100000000) throw new PeftError("BAD_ARGUMENT", `rng.int(n) needs 1 <= n <= 2^32, got ${n}`);
    const limit = 0x100000000 - (0x100000000 % n);
    let x: number;
    do x = this.nextU32(); while (x >= limit);
    return x % n;
  }

  /** Standard normal (Box-Muller; no cached spare so the state alone describes the stream). */
  normal(mean = 0, std = 1): number {
    const u = 1 - this.uniform(); // (0, 1], keeps log finite
    const v = this.uniform();
    return mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Fisher-Yates shuffle in place; returns the array. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }

  /** A shuffled 0..n-1. */
  permutation(n: number): number[] {
    return this.shuffle(Array.from({ length: n }, (_, i) => i));
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
