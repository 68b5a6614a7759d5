/**
 * QLoRA's base: linear weights quantized to NF4/FP4 at load (bitsandbytes-exact codes and block
 * scales, src/quant) and multiplied by the 4-bit kernels (kernels/nf4_matmul.ts), as a
 * `QuantizedLinear`.
 *
 * Quantization runs on the flattened [out, in] weight in GGUF row order (q/k rows stay in GGUF's
 * adjacent-pair order). Blocks are taken over the flat index, so when `in % blocksize != 0` a block
 * straddles two rows; the kernels index codes and scales by flat index, so that is exact here.
 * (A row permutation such as GGUF -> HF q/k order moves whole blocks only when in % blocksize == 0;
 * otherwise exporting to HF order must dequantize, permute and re-quantize.)
 */
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import { qmatmul, qmatmulBackward, type QuantizedWeight, uploadQuantizedGroup } from "../kernels/nf4_matmul.ts";
import { dequantize4bit, NESTED_BLOCKSIZE, quantize4bit, type QuantState4bit } from "../quant/mod.ts";
import type { QuantizedLinear, QuantMatmulOptions } from "./quantized.ts";

export class FourBitLinear implements QuantizedLinear {
  readonly kind = "4bit" as const;
  readonly f16Activations = true;
  constructor(readonly q: QuantizedWeight) {}

  get format(): string {
    return this.q.type;
  }
  get shape(): [number, number] {
    return this.q.shape;
  }
  get blocksize(): number {
    return this.q.blocksize;
  }
  get doubleQuant(): boolean {
    return this.q.doubleQuant;
  }
  tensors(): Tensor[] {
    return [this.q.codes, this.q.absmax, this.q.tables];
  }
  matmul(gpu: Gpu, x: Tensor, o: QuantMatmulOptions): Tensor {
    return qmatmul(gpu, x, this.q, o);
  }
  matmulBackward(gpu: Gpu, dy: Tensor, o: QuantMatmulOptions): Tensor {
    return qmatmulBackward(gpu, dy, this.q, o);
  }
  async dequantize(): Promise<Float32Array> {
    return dequantize4bit(await readQuantState(this.q.codes.gpu, this.q));
  }
  requantize(values: Float32Array, name: string): FourBitLinear {
    const { type, blocksize, doubleQuant, shape } = this.q;
    const state = quantize4bit(values, { type, blocksize, doubleQuant, name, shape });
    return uploadFourBit(this.q.codes.gpu, [{ state, shape, name }])[0];
  }
  release(): void {
    this.q.release();
  }
}

/** Uploads 4-bit weights whose small tables share one tensor (e.g. one layer's linears). */
export function uploadFourBit(gpu: Gpu, items: { state: QuantState4bit; shape: [number, number]; name: string }[]): FourBitLinear[] {
  return uploadQuantizedGroup(gpu, items).map((q) => new FourBitLinear(q));
}

/**
 * Reads a quantized weight back from the GPU as a bitsandbytes-style quant state (codes, scales
 * and tables exactly as uploaded), e.g. to dequantize it for merging or export.
 */
export async function readQuantState(gpu: Gpu, w: QuantizedWeight | FourBitLinear): Promise<QuantState4bit> {
  const qw = w instanceof FourBitLinear ? w.q : w;
  const [out, inn] = qw.shape;
  const n = out * inn;
  const blocks = Math.ceil(n / qw.blocksize);
  const packed = (await gpu.read(qw.codes, Math.ceil(n / 2))) as Uint8Array;
  const tables = await gpu.readF32(qw.tables);
  const code = tables.slice(qw.codeOffset, qw.codeOffset + 16);
  const state: QuantState4bit = {
    type: qw.type, blocksize: qw.blocksize, n, shape: [out, inn], dtype: "float32", packed: new Uint8Array(packed), code,
    absmax: null, nested: null,
  };
  if (qw.doubleQuant) {
    const codes = new Uint8Array((await gpu.read(qw.absmax, blocks)) as Uint8Array);
    const nb = Math.ceil(blocks / NESTED_BLOCKSIZE);
    state.nested = {
      codes,
      absmax: tables.slice(qw.nestedAbsmaxOffset, qw.nestedAbsmaxOffset + nb),
      offset: tables[qw.offsetIndex],
      blocksize: NESTED_BLOCKSIZE,
      map: tables.slice(qw.nestedMapOffset, qw.nestedMapOffset + 256),
    };
  } else {
    state.absmax = await gpu.readF32(qw.absmax, blocks);
  }
  return state;
}
