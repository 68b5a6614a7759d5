/**
 * AdamW with 8-bit blockwise state (bitsandbytes' blockwise 8-bit Adam, `adamw_8bit`;
 * shaders/adamw8bit.wgsl): m and v are 8-bit codes with one f32 absmax per block of 256 values,
 * m in bnb's signed dynamic map, v in its unsigned one. Each step dequantizes, runs the f32 AdamW
 * update of adamw.wgsl, and quantizes again with the block's new absmax.
 *
 * State lives in arenas: one u32 tensor of packed codes (the m codes of all the arena's blocks,
 * then the v codes) and one f32 tensor of absmax values (m's, then v's). A tensor's values start
 * on a block boundary at `blockOffset`.
 *
 * Quantization rule (kernel and host alike): absmax = max |x| over the block; code = number of the
 * map's 255 f32 midpoints strictly below fround(x * fround(1/absmax)) (a value on a midpoint takes
 * the lower code); absmax 0 gives the code of 0.0.
 */
import { check } from "../errors.ts";
import { type Gpu, grid1d, type Tensor } from "../gpu/gpu.ts";
import { DYNAMIC_MAP, DYNAMIC_MIDS, UNSIGNED_DYNAMIC_MAP, UNSIGNED_DYNAMIC_MIDS } from "../quant/tables.ts";
import { adamwParams, type AdamwOptions, validateAdamwOptions } from "./adamw.ts";

const f = Math.fround;

/** Values per absmax block (one workgroup each). */
export const ADAMW8BIT_BLOCK = 256;

/** A sorted 256-entry code map and its 255 midpoints. */
export interface CodeMap {
  map: Float32Array;
  mids: Float32Array;
}
/** m: bnb's signed dynamic map (create_dynamic_map(signed=True)). */
export const M_MAP: CodeMap = { map: DYNAMIC_MAP, mids: DYNAMIC_MIDS };
/** v: bnb's unsigned dynamic map (create_dynamic_map(signed=False)). */
export const V_MAP: CodeMap = { map: UNSIGNED_DYNAMIC_MAP, mids: UNSIGNED_DYNAMIC_MIDS };

/** The `tables` binding: mapS, mapU, midsS + pad, midsU + pad (256 f32 each). */
export const ADAMW8BIT_TABLES: Float32Array = (() => {
  const t = new Float32Array(1024);
  [M_MAP.map, V_MAP.map, M_MAP.mids, V_MAP.mids].forEach((a, i) => t.set(a, 256 * i));
  return t;
})();

/** Uploads the tables (once per optimizer; category "optimizer"). */
export function adamw8bitTables(gpu: Gpu): Tensor {
  return gpu.upload(ADAMW8BIT_TABLES, [ADAMW8BIT_TABLES.length], "f32", "optimizer");
}

export interface Adamw8bitState {
  param: Tensor;
  grad: Tensor;
  /** u32 [2 * B * 64]: packed codes of an arena of B blocks (m codes, then v codes). */
  codes: Tensor;
  /** f32 [2 * B]: absmax of m per block, then of v. */
  absmax: Tensor;
  /** adamw8bitTables(). */
  tables: Tensor;
  /** First block of `param`'s state in the arena (default 0). */
  blockOffset?: number;
}

/** One 8-bit AdamW update of `param` and its quantized moments, in place. */
export function adamw8bitStep(gpu: Gpu, s: Adamw8bitState, o: AdamwOptions): void {
  validateAdamwOptions(o);
  const n = s.param.size, off = s.blockOffset ?? 0;
  check(s.param.dtype === "f32" && s.grad.dtype === "f32" && s.grad.size === n, "ADAMW8BIT_SHAPE", `adamw_8bit: grad [${s.grad.shape}] ${s.grad.dtype} must match param [${s.param.shape}] ${s.param.dtype}, both f32`);
  const arena = s.absmax.size / 2;
  check(s.absmax.dtype === "f32" && Number.isInteger(arena), "ADAMW8BIT_SHAPE", `adamw_8bit: absmax must be f32 [2 * blocks], got [${s.absmax.shape}] ${s.absmax.dtype}`);
  check(s.codes.dtype === "u32" && s.codes.size === arena * 2 * (ADAMW8BIT_BLOCK / 4), "ADAMW8BIT_SHAPE", `adamw_8bit: codes must be u32 [${arena * 2 * (ADAMW8BIT_BLOCK / 4)}] for ${arena} blocks, got [${s.codes.shape}] ${s.codes.dtype}`);
  const blocks = Math.ceil(n / ADAMW8BIT_BLOCK);
  check(Number.isInteger(off) && off >= 0 && off + blocks <= arena, "ADAMW8BIT_SHAPE", `adamw_8bit: blocks ${off}..${off + blocks} of a ${n}-value tensor are outside the state's ${arena} blocks`);
  check(s.tables.dtype === "f32" && s.tables.size === ADAMW8BIT_TABLES.length, "ADAMW8BIT_SHAPE", `adamw_8bit: tables must be adamw8bitTables() (f32 [${ADAMW8BIT_TABLES.length}])`);
  if (n === 0) return;
  gpu.dispatch("adamw8bit", "step", {
    bindings: { param: s.param, grad: s.grad, codes: s.codes, absmax: s.absmax, tables: s.tables },
    params: adamwParams(n, o, off, arena),
    workgroups: grid1d(n, ADAMW8BIT_BLOCK),
  });
}

// ------------------------------------------------------------ host quantization (f32, as the kernel)

/** #{ j : mids[j] < x } over 255 sorted midpoints (branchless, as the kernel). */
function bucket(mids: Float32Array, x: number): number {
  let c = 0;
  for (let s = 128; s > 0; s >>= 1) c += mids[c + s - 1] < x ? s : 0;
  return c;
}

/** The code of 0.0 in a map (127 signed, 0 unsigned). */
export function zeroCode(t: CodeMap): number {
  return bucket(t.mids, 0);
}

function quantizeBlock(x: Float32Array, start: number, end: number, absmax: number, t: CodeMap, codes: Uint8Array): void {
  const r = absmax > 0 ? f(1 / absmax) : 0;
  for (let i = start; i < end; i++) codes[i] = bucket(t.mids, f(x[i] * r));
}

/** Whether quantizing the block with `absmax` dequantizes back to exactly its values. */
function reproduces(x: Float32Array, start: number, end: number, absmax: number, t: CodeMap): boolean {
  const r = f(1 / absmax);
  for (let i = start; i < end; i++) if (f(t.map[bucket(t.mids, f(x[i] * r))] * absmax) !== x[i]) return false;
  return true;
}

const bits = new Float32Array(1), bitsU = new Uint32Array(bits.buffer);
/** The f32 `d` steps of one ulp from a positive finite f32 `a`. */
function ulpStep(a: number, d: number): number {
  bits[0] = a;
  bitsU[0] += d;
  return bits[0];
}

/**
 * The absmax that dequantizes back to exactly the block's values when there is one near max|x|,
 * else max|x| (the kernel's rule). The signed map's lowest code is -0.99297..., not -1: a block
 * whose largest |m| is negative was quantized with an absmax about 1/0.993 of it, which we find
 * again among the f32 values around max|x| / |map[0]|.
 */
function restoredAbsmax(x: Float32Array, start: number, end: number, amax: number, t: CodeMap): number {
  if (amax === 0 || !Number.isFinite(amax) || reproduces(x, start, end, amax, t)) return amax;
  if (t.map[0] < 0) {
    const a0 = f(amax / -t.map[0]);
    for (const d of [0, -1, 1, -2, 2]) {
      const a = ulpStep(a0, d);
      if (reproduces(x, start, end, a, t)) return a;
    }
  }
  return amax;
}

/**
 * Blockwise 8-bit quantization of x with the kernel's rule. `codes` may be longer than x (whole
 * blocks; the rest is left as it is). `restore`: take the absmax that reproduces x exactly where x
 * was dequantized from such codes (writeState of a checkpoint), so quantize(dequantize(q)) = q.
 */
export function quantize8(
  x: Float32Array,
  t: CodeMap,
  restore = false,
  codes: Uint8Array = new Uint8Array(x.length),
  absmax: Float32Array = new Float32Array(Math.ceil(x.length / ADAMW8BIT_BLOCK)),
): { codes: Uint8Array; absmax: Float32Array } {
  for (let b = 0, start = 0; start < x.length; b++, start += ADAMW8BIT_BLOCK) {
    const end = Math.min(x.length, start + ADAMW8BIT_BLOCK);
    let a = 0;
    for (let i = start; i < end; i++) a = Math.max(a, Math.abs(x[i]));
    if (restore) a = restoredAbsmax(x, start, end, a, t);
    absmax[b] = a;
    quantizeBlock(x, start, end, a, t, codes);
  }
  return { codes, absmax };
}

/** map[code] * absmax of the first n codes (one f32 product each, as the kernel). */
export function dequantize8(codes: Uint8Array, absmax: Float32Array, t: CodeMap, n = codes.length): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = t.map[codes[i]] * absmax[Math.floor(i / ADAMW8BIT_BLOCK)];
  return out;
}

// ------------------------------------------------------------ CPU reference (f32, no fma)

export interface Adamw8bitHostState {
  param: Float32Array;
  grad: Float32Array;
  /** One code per value (unpacked), and one absmax per block. */
  qm: Uint8Array;
  absm: Float32Array;
  qv: Uint8Array;
  absv: Float32Array;
}

/** One 8-bit AdamW step on host copies, in f32 as the kernel computes it (Math.fround at every operation). */
export function adamw8bitReference(
  s: Adamw8bitHostState,
  o: AdamwOptions,
): Omit<Adamw8bitHostState, "grad"> & { m: Float32Array; v: Float32Array } {
  validateAdamwOptions(o);
  const n = s.param.length;
  const [lr, b1, b2, eps, wd] = [o.lr, o.beta1, o.beta2, o.eps, o.weightDecay].map(f);
  const bc1 = f(1 - o.beta1 ** o.step), bc2 = f(1 - o.beta2 ** o.step), gs = f(o.gradScale ?? 1);
  const c1 = f(1 - b1), c2 = f(1 - b2), lrWd = f(lr * wd);
  const mOld = dequantize8(s.qm, s.absm, M_MAP, n), vOld = dequantize8(s.qv, s.absv, V_MAP, n);
  const param = new Float32Array(n), m = new Float32Array(n), v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const g = f(s.grad[i] * gs);
    m[i] = f(f(b1 * mOld[i]) + f(c1 * g));
    v[i] = f(f(b2 * vOld[i]) + f(f(c2 * g) * g));
    let w = s.param[i];
    w = f(w - f(lrWd * w));
    w = f(w - f(f(lr * f(m[i] / bc1)) / f(f(Math.sqrt(f(v[i] / bc2))) + eps)));
    param[i] = w;
  }
  const qm = quantize8(m, M_MAP), qv = quantize8(v, V_MAP);
  return { param, m, v, qm: qm.codes, absm: qm.absmax, qv: qv.codes, absv: qv.absmax };
}
