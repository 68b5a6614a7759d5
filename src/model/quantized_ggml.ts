/**
 * A GGUF tensor kept in its own ggml block format on the GPU (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K,
 * Q5_K, Q6_K, BF16) as a `QuantizedLinear`: the file's bytes as they are, multiplied and looked up
 * (embeddings) by the dequantizing kernels of kernels/ggml_matmul.ts. The GPU holds exactly the
 * format's bytes per parameter (Q4_K 4.5 bits, Q8_0 8.5, Q6_K 6.5625, BF16 16).
 */
import type { Gpu, Tensor } from "../gpu/gpu.ts";
import { dequantizeGgml, GGML, GGML_TYPES } from "../io/ggml_quants.ts";
import { quantizeGgml } from "../io/ggml_quantize.ts";
import { GGML_GPU_TYPES, ggmlEmbedding, ggmlMatmul, ggmlMatmulBackward, type GgmlWeight, uploadGgml } from "../kernels/ggml_matmul.ts";
import type { QuantizedLinear, QuantMatmulOptions } from "./quantized.ts";

/** ggml type names a base weight can stay in on the GPU. */
export const GGML_KEPT_TYPES: readonly string[] = GGML_GPU_TYPES.map((t) => GGML_TYPES.get(t)!.name);

/**
 * Whether a GGUF tensor of ggml `type` and [out, in] `shape` stays in its format on the GPU:
 * a block format the kernels read (F32 and F16 are not: they load as f32 / f16 tensors), and for
 * BF16 rows of a multiple of 8 (the kernels' group; other BF16 matrices load as f32).
 */
export function keepsGgmlFormat(type: number, shape: readonly number[]): boolean {
  return shape.length === 2 && GGML_GPU_TYPES.includes(type) && (type !== GGML.BF16 || shape[1] % 8 === 0);
}

export class GgmlLinear implements QuantizedLinear {
  readonly kind = "ggml" as const;
  readonly f16Activations = false;
  constructor(readonly w: GgmlWeight) {}

  /** Uploads a weight's GGUF bytes unchanged (category "weights"); `name` labels errors. */
  static upload(gpu: Gpu, type: number, bytes: Uint8Array, shape: readonly number[], name: string): GgmlLinear {
    return new GgmlLinear(uploadGgml(gpu, type, bytes, shape, name));
  }

  get format(): string {
    return GGML_TYPES.get(this.w.type)!.name;
  }
  get type(): number {
    return this.w.type;
  }
  get shape(): [number, number] {
    return this.w.shape;
  }
  tensors(): Tensor[] {
    return [this.w.data];
  }
  matmul(gpu: Gpu, x: Tensor, o: QuantMatmulOptions): Tensor {
    return ggmlMatmul(gpu, x, this.w, o);
  }
  matmulBackward(gpu: Gpu, dy: Tensor, o: QuantMatmulOptions): Tensor {
    return ggmlMatmulBackward(gpu, dy, this.w, o);
  }
  embedding(gpu: Gpu, ids: Tensor): Tensor {
    return ggmlEmbedding(gpu, this.w, ids);
  }
  /** The GGUF bytes back from the GPU. */
  async bytes(): Promise<Uint8Array> {
    const [N, K] = this.w.shape;
    const t = GGML_TYPES.get(this.w.type)!;
    return (await this.w.data.gpu.read(this.w.data, (N * K / t.blockSize) * t.typeSize)) as Uint8Array;
  }
  async dequantize(): Promise<Float32Array> {
    const [N, K] = this.w.shape;
    return dequantizeGgml(this.w.type, await this.bytes(), N * K, this.w.name);
  }
  requantize(values: Float32Array, name: string): GgmlLinear {
    const bytes = quantizeGgml(this.w.type, values, this.w.shape[1], name);
    return GgmlLinear.upload(this.w.data.gpu, this.w.type, bytes, this.w.shape, name);
  }
  release(): void {
    this.w.release();
  }
}
