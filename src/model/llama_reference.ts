/**
 * The llama forward pass on the CPU in f64, written to read like the math (llama2.c style).
 * It is the reference the WGSL model is tested against, not a production path.
 * Weights use GGUF names and GGUF's adjacent-pair RoPE layout.
 */
import type { LlamaConfig } from "./config.ts";

export type HostWeights = Map<string, Float32Array>;

/** Optional LoRA deltas per linear: y += scale · B(A x). A: [r, in], B: [out, r]. */
export interface ReferenceLora {
  scale: number;
  r: number;
  /** Keyed by GGUF weight name, e.g. "blk.0.attn_q.weight". */
  layers: Map<string, { A: Float32Array; B: Float32Array }>;
}

function linear(x: Float64Array, w: Float32Array, out: number, inn: number, name: string, lora?: ReferenceLora): Float64Array {
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    const row = o * inn;
    for (let i = 0; i < inn; i++) s += w[row + i] * x[i];
    y[o] = s;
  }
  const l = lora?.layers.get(name);
  if (l && lora) {
    const r = lora.r;
    const ax = new Float64Array(r);
    for (let k = 0; k < r; k++) {
      let s = 0;
      for (let i = 0; i < inn; i++) s += l.A[k * inn + i] * x[i];
      ax[k] = s;
    }
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += l.B[o * r + k] * ax[k];
      y[o] += lora.scale * s;
    }
  }
  return y;
}

function rmsnorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const rstd = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * rstd * w[i]);
}

/** Adjacent-pair RoPE (llama.cpp "normal" mode), theta computed like llama.cpp in f32. */
function rope(x: Float64Array, nHeads: number, headDim: number, ropeDim: number, pos: number, base: number) {
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < ropeDim / 2; i++) {
      const theta = Math.fround(pos * Math.fround(Math.pow(base, -(2 * i) / ropeDim)));
      const c = Math.cos(theta), s = Math.sin(theta);
      const a = h * headDim + 2 * i;
      const x0 = x[a], x1 = x[a + 1];
      x[a] = x0 * c - x1 * s;
      x[a + 1] = x0 * s + x1 * c;
    }
  }
}

/**
 * Logits [T, V] for `tokens` (positions 0..T-1), computed token by token with a KV cache,
 * exactly as causal attention defines them.
 */
export function llamaReferenceLogits(c: LlamaConfig, w: HostWeights, tokens: number[], lora?: ReferenceLora): Float64Array[] {
  const D = c.headDim, kvDim = c.nKvHeads * D, qDim = c.nHeads * D;
  const group = c.nHeads / c.nKvHeads;
  const get = (n: string) => {
    const t = w.get(n);
    if (!t) throw new Error(`reference: missing weight ${n}`);
    return t;
  };
  const kCache: Float64Array[][] = Array.from({ length: c.nLayers }, () => []);
  const vCache: Float64Array[][] = Array.from({ length: c.nLayers }, () => []);
  const out: Float64Array[] = [];
  const emb = get("token_embd.weight");
  const head = c.tiedEmbeddings ? emb : get("output.weight");
  for (let pos = 0; pos < tokens.length; pos++) {
    let x = Float64Array.from(emb.subarray(tokens[pos] * c.dim, (tokens[pos] + 1) * c.dim));
    for (let l = 0; l < c.nLayers; l++) {
      const p = `blk.${l}.`;
      const xn = rmsnorm(x, get(p + "attn_norm.weight"), c.normEps);
      const q = linear(xn, get(p + "attn_q.weight"), qDim, c.dim, p + "attn_q.weight", lora);
      const k = linear(xn, get(p + "attn_k.weight"), kvDim, c.dim, p + "attn_k.weight", lora);
      const v = linear(xn, get(p + "attn_v.weight"), kvDim, c.dim, p + "attn_v.weight", lora);
      rope(q, c.nHeads, D, c.ropeDim, pos, c.ropeBase);
      rope(k, c.nKvHeads, D, c.ropeDim, pos, c.ropeBase);
      kCache[l].push(k);
      vCache[l].push(v);
      const att = new Float64Array(qDim);
      for (let h = 0; h < c.nHeads; h++) {
        const kh = Math.floor(h / group);
        const scores = new Float64Array(pos + 1);
        let max = -Infinity;
        for (let j = 0; j <= pos; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[h * D + d] * kCache[l][j][kh * D + d];
          scores[j] = s / Math.sqrt(D);
          max = Math.max(max, scores[j]);
        }
        let sum = 0;
        for (let j = 0; j <= pos; j++) sum += scores[j] = Math.exp(scores[j] - max);
        for (let j = 0; j <= pos; j++) {
          const a = scores[j] / sum;
          for (let d = 0; d < D; d++) att[h * D + d] += a * vCache[l][j][kh * D + d];
        }
      }
      const o = linear(att, get(p + "attn_output.weight"), c.dim, qDim, p + "attn_output.weight", lora);
      x = x.map((v, i) => v + o[i]);
      const xn2 = rmsnorm(x, get(p + "ffn_norm.weight"), c.normEps);
      const g = linear(xn2, get(p + "ffn_gate.weight"), c.hiddenDim, c.dim, p + "ffn_gate.weight", lora);
      const u = linear(xn2, get(p + "ffn_up.weight"), c.hiddenDim, c.dim, p + "ffn_up.weight", lora);
      const hdn = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
      const dn = linear(hdn, get(p + "ffn_down.weight"), c.dim, c.hiddenDim, p + "ffn_down.weight", lora);
      x = x.map((v, i) => v + dn[i]);
    }
    const xf = rmsnorm(x, get("output_norm.weight"), c.normEps);
    out.push(linear(xf, head, c.vocabSize, c.dim, "output.weight"));
  }
  return out;
}
