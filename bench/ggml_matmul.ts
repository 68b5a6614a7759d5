/**
 * Matmuls on ggml block formats (src/kernels/ggml_matmul.ts: the weight stays in its GGUF bytes,
 * dequantized on the fly) beside the f32 matmul (shaders/matmul.wgsl), the f16 one
 * (shaders/matmul_f16.wgsl, computeDtype "f16": f16 weight, the activations narrowed to f16 per
 * call as the model does) and the NF4 one on the same weight, same device, same run. The weight is the ~25M llama's FFN up projection W [1376, 512]
 * (bench/README.md); decode (M = 1) and prefill (M = 64) rows, forward y = x·Wᵀ and backward
 * dx = dy·W (what LoRA training on a frozen quantized base runs). Median µs per call; the GPU bytes
 * per parameter of each weight beside.
 *
 *   node scripts/prepare.mjs && deno run -A bench/ggml_matmul.ts [--quick] [--types=Q8_0,Q4_K,Q6_K]
 */
import { Gpu, type Tensor } from "../src/gpu/gpu.ts";
import { GGML, GGML_TYPES } from "../src/io/ggml_quants.ts";
import { quantizeGgml } from "../src/io/ggml_quantize.ts";
import { ggmlBytes, ggmlMatmul, ggmlMatmulBackward, uploadGgml } from "../src/kernels/ggml_matmul.ts";
import { matmul } from "../src/kernels/matmul.ts";
import { matmulF16 } from "../src/kernels/matmul_f16.ts";
import { toF16 } from "../src/kernels/convert_f16.ts";
import { f32ToF16Array } from "../src/io/bytes.ts";
import { qmatmul, qmatmulBackward, quantizedBytes, uploadQuantized } from "../src/kernels/nf4_matmul.ts";
import { quantize4bit } from "../src/quant/mod.ts";
import { gpuMsPerCall } from "./lib/gpu_time.ts";

const quick = Deno.args.includes("--quick");
const typeArg = Deno.args.find((a) => a.startsWith("--types="))?.slice(8);
const types = (typeArg ? typeArg.split(",") : ["Q8_0", "Q6_K", "Q4_K"]) as (keyof typeof GGML)[];
const [N, K] = [1376, 512];
const ROWS = [1, 64];

const gpu = await Gpu.create();

function randn(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const r = () => ((s = (s * 1664525 + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return Float32Array.from({ length: n }, () => scale * Math.sqrt(-2 * Math.log(r())) * Math.cos(2 * Math.PI * r()));
}

/** One weight format: its GPU bytes and its forward / backward launchers. */
interface Format {
  name: string;
  bytes: number;
  fwd(x: Tensor, y: Tensor, M: number): void;
  bwd(dy: Tensor, dx: Tensor, M: number): void;
  release(): void;
}

const w = randn(N * K, 1, 0.05);
const formats: Format[] = [];
{
  const W = gpu.upload(w, [N, K], "f32", "weights");
  formats.push({
    name: "f32 (peer)",
    bytes: W.byteLength,
    fwd: (x, y, M) => matmul(gpu, x, W, { M, N, K, transB: true, out: y }),
    bwd: (dy, dx, M) => matmul(gpu, dy, W, { M, N: K, K: N, out: dx }),
    release: () => W.release(),
  });
  const W16 = gpu.upload(f32ToF16Array(w), [N, K], "f16", "weights");
  const narrowed = (a: Tensor, fn: (h: Tensor) => void) => {
    const h = toF16(gpu, a, "activations");
    fn(h);
    h.release();
  };
  formats.push({
    name: "f16 (peer)",
    bytes: W16.byteLength,
    fwd: (x, y, M) => narrowed(x, (h) => matmulF16(gpu, h, W16, { M, N, K, transB: true, out: y })),
    bwd: (dy, dx, M) => narrowed(dy, (h) => matmulF16(gpu, h, W16, { M, N: K, K: N, out: dx })),
    release: () => W16.release(),
  });
  const qw = uploadQuantized(gpu, quantize4bit(w, { doubleQuant: true }), [N, K]);
  formats.push({
    name: "NF4 dq (peer)",
    bytes: quantizedBytes(qw),
    fwd: (x, y, M) => qmatmul(gpu, x, qw, { M, out: y }),
    bwd: (dy, dx, M) => qmatmulBackward(gpu, dy, qw, { M, out: dx }),
    release: () => qw.release(),
  });
}
for (const t of types) {
  const gw = uploadGgml(gpu, GGML[t], quantizeGgml(GGML[t], w, K, t), [N, K], t);
  formats.push({
    name: t,
    bytes: ggmlBytes(gw),
    fwd: (x, y, M) => ggmlMatmul(gpu, x, gw, { M, out: y }),
    bwd: (dy, dx, M) => ggmlMatmulBackward(gpu, dy, gw, { M, out: dx }),
    release: () => gw.release(),
  });
}

console.log(`device: ${gpu.info.description}`);
console.log(`weight W [${N}, ${K}] (${N * K} parameters); µs per call, median of ${quick ? 3 : 5} batches; (x f32) = time relative to f32\n`);
const cols = ROWS.flatMap((M) => [`fwd M=${M}`, `bwd M=${M}`]);
console.log(`| format | bits/param | ${cols.join(" | ")} |`);
console.log(`| --- | ---: | ${cols.map(() => "---:").join(" | ")} |`);
const f32Times: number[] = [];
for (const f of formats) {
  const cells: string[] = [];
  for (const M of ROWS) {
    const x = gpu.upload(randn(M * K, 2), [M, K], "f32", "activations"), y = gpu.tensor([M, N]);
    const dy = gpu.upload(randn(M * N, 3), [M, N], "f32", "activations"), dx = gpu.tensor([M, K]);
    const flops = 2 * M * N * K;
    const opts = { flops, flopsPerBatch: 2e8, maxReps: 200, samples: quick ? 3 : 5 };
    for (const run of [() => f.fwd(x, y, M), () => f.bwd(dy, dx, M)]) {
      const us = 1000 * await gpuMsPerCall(gpu, run, opts);
      const i = cells.length;
      if (f === formats[0]) f32Times[i] = us;
      cells.push(f === formats[0] ? us.toFixed(1) : `${us.toFixed(1)} (${(us / f32Times[i]).toFixed(2)}x)`);
    }
    for (const t of [x, y, dy, dx]) t.release();
  }
  console.log(`| ${f.name} | ${((8 * f.bytes) / (N * K)).toFixed(4)} | ${cells.join(" | ")} |`);
  f.release();
}
const formatBits = types.map((t) => `${t} ${(8 * GGML_TYPES.get(GGML[t])!.typeSize) / GGML_TYPES.get(GGML[t])!.blockSize}`).join(", ");
console.log(`\nformat bits per parameter (ggml): ${formatBits}`);
gpu.destroy();
