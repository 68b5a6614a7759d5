/**
 * The code tables of bitsandbytes' 4-bit and 8-bit blockwise quantization, and the midpoints
 * that turn "nearest code" into a bucketize with bitsandbytes' tie rule.
 *
 * - NF4: functional.py get_4bit_type("nf4"), the 16 quantiles of N(0,1) normalised to [-1, 1].
 * - FP4: get_4bit_type("fp4"): 1 sign bit, 2 exponent bits, 1 mantissa bit (bias 3) giving
 *   magnitudes {0, 0.0625, 8, 12, 4, 6, 2, 3} for codes 0..7, divided by 12 in f32; codes 8..15
 *   are the negatives. This is the table bnb stores as `quant_map` and its CUDA kernels use.
 * - Dynamic map: create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), the
 *   256-entry sorted table for 8-bit blockwise quantization of the absmax constants (and of
 *   8-bit AdamW's first moment); signed=False gives the unsigned map of its second moment.
 *
 * Tie rule: a value exactly on a midpoint between two neighbouring sorted codes takes the lower
 * one (bnb's CUDA kernels compare with a strict `>`). FP4 is sign-magnitude (as CUDA's
 * dQuantizeFP4): the sign adds 8 when x < 0 and |x| is bucketized on the magnitude midpoints.
 */
export type QuantType4 = "nf4" | "fp4";

const f = Math.fround;

export const NF4_CODE: Float32Array = new Float32Array([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
  0.7229568362236023, 1.0,
]);

const FP4_RAW = [0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0];
export const FP4_CODE: Float32Array = new Float32Array(FP4_RAW.map((v) => f(v / 12)));

export function codeTable(type: QuantType4): Float32Array {
  return type === "nf4" ? NF4_CODE : FP4_CODE;
}

/** f32 midpoints of a sorted table: (a + b) / 2 rounded once, as torch computes them in f32. */
export function midpoints(sorted: ArrayLike<number>): Float32Array {
  const out = new Float32Array(sorted.length - 1);
  for (let i = 0; i + 1 < sorted.length; i++) out[i] = f((sorted[i] + sorted[i + 1]) / 2);
  return out;
}

/** What the quantizer needs per type: sorted midpoints, rank -> code, sign-magnitude flag. */
export interface Bucketizer {
  mids: Float32Array;
  rankToCode: Uint8Array; // 16 entries
  signMagnitude: boolean;
}

export function bucketizer(type: QuantType4): Bucketizer {
  if (type === "nf4") {
    return { mids: midpoints(NF4_CODE), rankToCode: Uint8Array.from({ length: 16 }, (_, i) => i), signMagnitude: false };
  }
  // magnitudes are codes 0..7; sort them and remember which code each rank is
  const order = [0, 1, 2, 3, 4, 5, 6, 7].sort((a, b) => FP4_CODE[a] - FP4_CODE[b]);
  const rankToCode = new Uint8Array(16);
  order.forEach((code, rank) => rankToCode[rank] = code);
  return { mids: midpoints(order.map((c) => FP4_CODE[c])), rankToCode, signMagnitude: true };
}

/**
 * torch.linspace(start, end, steps, dtype=float32) on the CPU: step = (end - start) / (steps - 1)
 * in f32; the first half counts up from start, the second half down from end.
 */
function linspaceF32(start: number, end: number, steps: number): number[] {
  const s = f(start), e = f(end);
  const step = f(f(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  const out: number[] = [];
  for (let i = 0; i < steps; i++) out.push(i < half ? f(s + f(step * i)) : f(e - f(step * (steps - i - 1))));
  return out;
}

/**
 * create_dynamic_map(signed, max_exponent_bits=7, total_bits=8), sorted ascending. Signed: per
 * exponent i, 2^i means of linspace(0.1, 1) boundaries and their negatives, plus 0 and 1 (the
 * absmax map of double quant and of 8-bit Adam's m). Unsigned: 2^(i+1) means per exponent, no
 * negatives, plus 0 and 1 (8-bit Adam's v). 256 entries either way.
 */
export function createDynamicMap(signed = true, maxExponentBits = 7, totalBits = 8): Float32Array {
  const data: number[] = [];
  const nonSignBits = totalBits - 1;
  for (let i = 0; i < maxExponentBits; i++) {
    const fractionItems = 2 ** (i + nonSignBits - maxExponentBits + (signed ? 0 : 1)) + 1;
    const b = linspaceF32(0.1, 1, fractionItems);
    const scale = f(10 ** (-(maxExponentBits - 1) + i));
    const means = b.slice(0, -1).map((v, k) => f(f(v + b[k + 1]) / 2));
    for (const m of means) data.push(f(scale * m));
    if (signed) for (const m of means) data.push(f(-scale * m));
  }
  data.push(0, 1);
  // (additional_items is 0 for 7 exponent bits of 8, and there is no padding to 256)
  return new Float32Array(data.sort((a, b) => a - b));
}

/**
 * The dynamic map exactly as bitsandbytes builds it with torch on x86 CPUs (bit patterns written
 * by scripts/dev/make_nf4_fixtures.py). torch.linspace's f32 results depend on its vectorised
 * CPU kernel, so a few entries differ by one ulp from the plain formula above
 * (createDynamicMap; tests check the two agree within two ulps); checkpoints carry their map as
 * `nested_quant_map` and loading uses that one.
 */
export const DYNAMIC_MAP: Float32Array = new Float32Array(new Uint32Array([
  0xbf7e3333, 0xbf7a9999, 0xbf770000, 0xbf736666, 0xbf6fcccc, 0xbf6c3333, 0xbf68999a, 0xbf650000, 0xbf616666,
  0xbf5dcccc, 0xbf5a3333, 0xbf569999, 0xbf530000, 0xbf4f6666, 0xbf4bcccc, 0xbf483333, 0xbf44999a, 0xbf410000,
  0xbf3d6667, 0xbf39cccd, 0xbf363334, 0xbf32999a, 0xbf2f0000, 0xbf2b6667, 0xbf27cccd, 0xbf243333, 0xbf20999a,
  0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a, 0xbf0b0000, 0xbf076666, 0xbf03cccd, 0xbf003333,
  0xbef93334, 0xbef20000, 0xbeeacccc, 0xbee3999a, 0xbedc6666, 0xbed53332, 0xbece0000, 0xbec6cccc, 0xbebf999a,
  0xbeb86666, 0xbeb13332, 0xbeaa0000, 0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d999a,
  0xbe6f3334, 0xbe60cccd, 0xbe526666, 0xbe440000, 0xbe359999, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000,
  0xbddb3334, 0xbdc9eb85, 0xbdc428f5, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c28, 0xbda1999a,
  0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd, 0xbd7e147a, 0xbd728f5d, 0xbd670a3d, 0xbd5b851f,
  0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae147, 0xbcfeb852, 0xbce7ae13,
  0xbcd0a3d7, 0xbcb9999a, 0xbca28f5c, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148, 0xbc1f3b64, 0xbc160418, 0xbc0ccccd,
  0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4, 0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a,
  0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d, 0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01,
  0xb9c7e283, 0xb98ce705, 0xb923d70b, 0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94,
  0xb513a3b7, 0x00000000, 0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b,
  0x3923d70b, 0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
  0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4, 0x3bcfdf3b,
  0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148, 0x3c68f5c3, 0x3c8b851f,
  0x3ca28f5c, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae13, 0x3cfeb852, 0x3d0ae147, 0x3d166667, 0x3d21eb85, 0x3d2d70a3,
  0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d, 0x3d728f5d, 0x3d7e147a, 0x3d84cccd, 0x3d8a8f5d,
  0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a, 0x3da75c28, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667,
  0x3dc428f5, 0x3dc9eb85, 0x3ddb3334, 0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e359999, 0x3e440000,
  0x3e526666, 0x3e60cccd, 0x3e6f3334, 0x3e7d999a, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc,
  0x3eaa0000, 0x3eb13332, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53332, 0x3edc6666, 0x3ee3999a,
  0x3eeacccc, 0x3ef20000, 0x3ef93334, 0x3f003333, 0x3f03cccd, 0x3f076666, 0x3f0b0000, 0x3f0e999a, 0x3f123334,
  0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243333, 0x3f27cccd, 0x3f2b6667, 0x3f2f0000, 0x3f32999a,
  0x3f363334, 0x3f39cccd, 0x3f3d6667, 0x3f410000, 0x3f44999a, 0x3f483333, 0x3f4bcccc, 0x3f4f6666, 0x3f530000,
  0x3f569999, 0x3f5a3333, 0x3f5dcccc, 0x3f616666, 0x3f650000, 0x3f68999a, 0x3f6c3333, 0x3f6fcccc, 0x3f736666,
  0x3f770000, 0x3f7a9999, 0x3f7e3333, 0x3f800000
]).buffer);
export const DYNAMIC_MIDS: Float32Array = midpoints(DYNAMIC_MAP);

/**
 * create_dynamic_map(signed=False): the map of 8-bit Adam's second moment, from the formula
 * (torch's vectorised linspace may put a few entries an ulp away; the optimizer only needs one
 * fixed sorted table, and its checkpoints store dequantized f32 state).
 */
export const UNSIGNED_DYNAMIC_MAP: Float32Array = createDynamicMap(false);
export const UNSIGNED_DYNAMIC_MIDS: Float32Array = midpoints(UNSIGNED_DYNAMIC_MAP);
