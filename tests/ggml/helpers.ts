/**
 * Test models for GGUF bases kept in ggml block formats.
 *
 * stories260K's rows (64, and 172 in the FFN) are not whole blocks of the K-quants (256), so the
 * tests use stories260K *widened*: every matrix zero-padded so each row holds 256 values (dim
 * 64 -> 256, FFN 172 -> 256, 8 -> 32 query heads of 8, 4 -> 16 KV heads; head h still reads KV
 * head h/2), norm weights halved and the RMSNorm epsilon quartered, so it computes stories260K's
 * function (RMSNorm over 256 columns of which 192 stay zero is RMSNorm over the 64 scaled by 2).
 * Unlike random weights it is a trained model, with peaked next-token distributions, so greedy
 * ids are a stable thing to compare across implementations. Every matrix quantizes to any type.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { quantizeGgml } from "../../src/io/ggml_quantize.ts";
import { GgufType, type GgufMetaEntry, type GgufWriteTensor, readGGUF, writeGGUF } from "../../src/io/gguf.ts";
import { STORIES } from "../helpers.ts";

export const WIDE = { dim: 256, hiddenDim: 256, nHeads: 32, nKvHeads: 16, nLayers: 5, vocabSize: 512 };

export interface GgufModel {
  metadata: Map<string, GgufMetaEntry>;
  /** f32 tensors, GGUF names and PyTorch-order shapes. */
  tensors: GgufWriteTensor[];
}

/** `data` [rows, cols] zero-padded to [R, C] (the original in the top-left corner). */
function pad(data: Float32Array, rows: number, cols: number, R: number, C: number): Float32Array {
  const out = new Float32Array(R * C);
  for (let r = 0; r < rows; r++) out.set(data.subarray(r * cols, (r + 1) * cols), r * C);
  return out;
}

let wide: Promise<GgufModel> | null = null;

/** stories260K widened to rows of 256 (see the header), f32. */
export function widenedStories(): Promise<GgufModel> {
  return wide ??= (async () => {
    const g = await readGGUF(STORIES);
    const metadata = new Map(g.metadata);
    const u32 = (value: number): GgufMetaEntry => ({ type: GgufType.UINT32, value });
    metadata.set("general.name", { type: GgufType.STRING, value: "stories260K-wide256" });
    metadata.set("llama.embedding_length", u32(WIDE.dim));
    metadata.set("llama.feed_forward_length", u32(WIDE.hiddenDim));
    metadata.set("llama.attention.head_count", u32(WIDE.nHeads));
    metadata.set("llama.attention.head_count_kv", u32(WIDE.nKvHeads));
    const eps = g.get<number>("llama.attention.layer_norm_rms_epsilon")!;
    metadata.set("llama.attention.layer_norm_rms_epsilon", { type: GgufType.FLOAT32, value: eps / 4 });
    const tensors: GgufWriteTensor[] = [];
    for (const t of g.tensors.values()) {
      const data = await g.readF32(t.name);
      if (t.shape.length === 1) {
        const w = new Float32Array(WIDE.dim);
        data.forEach((v, i) => (w[i] = v / 2));
        tensors.push({ name: t.name, shape: [WIDE.dim], data: w });
        continue;
      }
      const [rows, cols] = t.shape;
      const R = t.name.endsWith("attn_k.weight") || t.name.endsWith("attn_v.weight")
        ? WIDE.nKvHeads * 8
        : rows === 512 ? 512 : 256;
      tensors.push({ name: t.name, shape: [R, 256], data: pad(data, rows, cols, R, 256) });
    }
    await g.close();
    return { metadata, tensors };
  })();
}

/**
 * The widened model with every matrix (embedding table and head included) quantized to ggml
 * `type` by our quantizer (llama.cpp's reference quantizers), written to a new temporary file.
 */
export async function quantizedStories(type: number, dir?: string, only?: (name: string) => boolean): Promise<string> {
  const m = await widenedStories();
  const tensors = m.tensors.map((t) =>
    t.shape.length === 2 && (only?.(t.name) ?? true)
      ? { name: t.name, shape: t.shape, data: quantizeGgml(type, t.data as Float32Array, t.shape[1], t.name), ggmlType: type }
      : t
  );
  const path = join(dir ?? await mkdtemp(join(tmpdir(), "ggml-base-")), `stories-wide-${type}.gguf`);
  await writeGGUF(path, { metadata: m.metadata, tensors });
  return path;
}

/** The widened model as an f32 GGUF. */
export async function widenedStoriesF32(dir?: string): Promise<string> {
  const m = await widenedStories();
  const path = join(dir ?? await mkdtemp(join(tmpdir(), "ggml-base-")), "stories-wide-f32.gguf");
  await writeGGUF(path, m);
  return path;
}
