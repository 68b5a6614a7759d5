/**
 * Matmul throughput: our kernel (shaders/matmul.wgsl) beside the naive one-output-per-thread
 * kernel (shaders/matmul_naive.wgsl), same device, same run. Time is measured around
 * `await gpu.sync()` for a batch of dispatches; the median of several repetitions is reported.
 *
 *   node scripts/prepare.mjs && deno run -A bench/matmul.ts [--quick]
 */
import { Gpu, type Tensor } from "../src/gpu/gpu.ts";
import { matmul, type MatmulOptions } from "../src/kernels/matmul.ts";
import { gpuMsPerCall } from "./lib/gpu_time.ts";

const quick = Deno.args.includes("--quick");
const gpu = await Gpu.create();

function naive(a: Tensor, b: Tensor, c: Tensor, o: MatmulOptions) {
  gpu.dispatch("matmul_naive", "main", {
    bindings: { a, b, c },
    params: [o.M, o.N, o.K],
    constants: { TRANS_A: o.transA ? 1 : 0, TRANS_B: o.transB ? 1 : 0 },
    workgroups: [Math.ceil(o.N / 8), Math.ceil(o.M / 8)],
  });
}

/** Median seconds per matmul; batches of up to 200 calls of ~2e8 flops. */
const time = async (run: () => void, flops: number) =>
  (await gpuMsPerCall(gpu, run, { flops, flopsPerBatch: 2e8, maxReps: 200, samples: quick ? 3 : 5 })) / 1000;

interface Case { name: string; o: MatmulOptions }
const only = Deno.args.find((a) => a.startsWith("--only="))?.slice(7);
const cases: Case[] = [
  { name: "1024³ linear fwd (transB)", o: { M: 1024, N: 1024, K: 1024, transB: true } },
  { name: "1024³ dX = dY·W (NN)", o: { M: 1024, N: 1024, K: 1024 } },
  { name: "1024³ dW = dYᵀ·X (transA)", o: { M: 1024, N: 1024, K: 1024, transA: true } },
];
// stories260K: dim 64, ffn 172, vocab 512; T = 256 tokens per step, and M = 1 decode.
for (const [M, tag] of [[256, "T=256"], [1, "decode M=1"]] as const) {
  cases.push({ name: `stories260K q/o 64x64 ${tag}`, o: { M, N: 64, K: 64, transB: true } });
  cases.push({ name: `stories260K ffn up 172x64 ${tag}`, o: { M, N: 172, K: 64, transB: true } });
  cases.push({ name: `stories260K ffn down 64x172 ${tag}`, o: { M, N: 64, K: 172, transB: true } });
  cases.push({ name: `stories260K head 512x64 ${tag}`, o: { M, N: 512, K: 64, transB: true } });
}
// ~25M llama: dim 512, ffn 1376, vocab 32000, M = 256 tokens, and M = 1 decode.
for (const [M, tag] of [[256, "M=256"], [1, "decode M=1"]] as const) {
  cases.push({ name: `25M attn 512x512 ${tag}`, o: { M, N: 512, K: 512, transB: true } });
  cases.push({ name: `25M ffn up 1376x512 ${tag}`, o: { M, N: 1376, K: 512, transB: true } });
  cases.push({ name: `25M ffn down 512x1376 ${tag}`, o: { M, N: 512, K: 1376, transB: true } });
  cases.push({ name: `25M head 32000x512 ${tag}`, o: { M, N: 32000, K: 512, transB: true } });
}
cases.push({ name: "25M ffn up dW (transA) M=256", o: { M: 1376, N: 512, K: 256, transA: true } });
cases.push({ name: "25M ffn up dX (NN) M=256", o: { M: 256, N: 512, K: 1376 } });

console.log(`device: ${gpu.info.description}\n`);
console.log("| shape (M x N x K) | case | ours GFLOP/s | naive GFLOP/s | speed-up |");
console.log("| --- | --- | ---: | ---: | ---: |");
for (const { name, o } of cases.filter((c) => !only || c.name.includes(only))) {
  const a = gpu.zeros([o.M * o.K]), b = gpu.zeros([o.K * o.N]), c = gpu.tensor([o.M, o.N]);
  const flops = 2 * o.M * o.N * o.K;
  const ours = flops / (await time(() => matmul(gpu, a, b, { ...o, out: c }), flops)) / 1e9;
  const skipNaive = quick && flops > 1e9;
  const base = skipNaive ? NaN : flops / (await time(() => naive(a, b, c, o), flops)) / 1e9;
  console.log(`| ${o.M}x${o.N}x${o.K} | ${name} | ${ours.toFixed(2)} | ${skipNaive ? "-" : base.toFixed(2)} | ${skipNaive ? "-" : (ours / base).toFixed(1) + "x"} |`);
  a.release(), b.release(), c.release();
}
gpu.destroy();
