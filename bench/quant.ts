/**
 * 4-bit quantization throughput, single thread, side by side in one run:
 *   quantize / dequantize (NF4, blocksize 64) in WASM (SIMD) vs the plain TypeScript version,
 *   against a memcpy of the same f32 bytes (TypedArray.set), the ceiling. GB/s are of f32 data.
 * and the 4-bit matmul (shaders/nf4_matmul.wgsl) vs the f32 matmul (shaders/matmul.wgsl) on the
 * same shapes on the GPU (median of several timed batches around `await gpu.sync()`).
 *
 *   node scripts/prepare.mjs && deno run -A bench/quant.ts [--quick] [--no-gpu]
 */
import { dequantize4bit, dequantize4bitReference, quantize4bit, quantize4bitReference } from "../src/quant/mod.ts";

const quick = Deno.args.includes("--quick");
/** 1M values (4 MiB: source and copy stay in cache) and 16M (64 MiB: out of cache). */
const sizes = [1 << 20, 1 << 24];

function randn(count: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = (s >>> 8) / 16777216;
    out[i] = (u - 0.5) * 0.04 + ((s & 255) - 127.5) * 1e-4;
  }
  return out;
}

/** Median GB/s of f32 data (4n bytes) over a few runs. */
function gbps(n: number, run: () => void, runs = quick ? 5 : 11): number {
  run(); // warm-up (JIT, WASM tier-up)
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    run();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return (4 * n) / (t[Math.floor(t.length / 2)] / 1000) / 1e9;
}

const { QuantWasm } = await import("../src/quant/wasm.ts");
console.log(`# 4-bit quantization (NF4, blocksize 64), single thread, ${Deno.build.os}/${Deno.build.arch}, WASM build "${QuantWasm.get().variant}"; medians of ${quick ? 5 : 11} runs, GB/s of f32 data`);
for (const n of sizes) {
  const x = randn(n, 1);
  const dst = new Float32Array(n);
  const memcpy = gbps(n, () => dst.set(x));
  const st = quantize4bit(x);
  // memcpy writes into an existing array; so does this row (fresh arrays add page faults)
  const into = { packed: new Uint8Array(n / 2), absmax: new Float32Array(n / 64) };
  const ref = quantize4bitReference(x, "nf4", 64);
  const slow = quick ? 3 : 5;
  const rows: [string, number][] = [
    ["memcpy (TypedArray.set, ceiling)", memcpy],
    ["quantize nf4 WASM", gbps(n, () => quantize4bit(x))],
    ["quantize nf4 WASM into reused arrays", gbps(n, () => quantize4bit(x, { into }))],
    ["quantize fp4 WASM", gbps(n, () => quantize4bit(x, { type: "fp4" }))],
    ["quantize nf4 + double quant WASM", gbps(n, () => quantize4bit(x, { doubleQuant: true }))],
    ["quantize nf4 plain TS", gbps(n, () => quantize4bitReference(x, "nf4", 64), slow)],
    ["dequantize nf4 WASM into a reused array", gbps(n, () => dequantize4bit(st, dst))],
    ["dequantize nf4 plain TS", gbps(n, () => dequantize4bitReference(ref.packed, ref.absmax, n, "nf4", 64), slow)],
  ];
  console.log(`\n## ${n} values (${(4 * n) / 2 ** 20} MiB of f32)`);
  for (const [name, v] of rows) console.log(`${name.padEnd(40)} ${v.toFixed(2).padStart(7)} GB/s  ${(100 * v / memcpy).toFixed(0).padStart(4)}% of memcpy`);
}

if (!Deno.args.includes("--no-gpu")) {
  const { Gpu } = await import("../src/gpu/gpu.ts");
  const { matmul } = await import("../src/kernels/matmul.ts");
  const { qmatmul, qmatmulBackward, uploadQuantized } = await import("../src/kernels/nf4_matmul.ts");
  const gpu = await Gpu.create();
  const shapes = quick ? [[1, 512, 512], [64, 512, 512]] : [[1, 2048, 2048], [8, 2048, 2048], [64, 1024, 1024], [256, 1024, 1024]];
  const { gpuMsPerCall } = await import("./lib/gpu_time.ts");
  const time = (run: () => void, flops: number) => gpuMsPerCall(gpu, run, { flops, flopsPerBatch: 1e9, maxReps: 100, samples: quick ? 3 : 5 });
  console.log(`\n# 4-bit vs f32 matmul on ${gpu.info.description ?? "GPU"}: ms per call (GFLOP/s)`);
  for (const [M, N, K] of shapes) {
    const w = randn(N * K, 2);
    const qst = quantize4bit(w, { doubleQuant: true });
    const qw = uploadQuantized(gpu, qst, [N, K]);
    const W = gpu.upload(w, [N, K], "f32", "weights");
    const xt = gpu.upload(randn(M * K, 3), [M, K], "f32", "activations");
    const dy = gpu.upload(randn(M * N, 4), [M, N], "f32", "activations");
    const y = gpu.tensor([M, N]);
    const dx = gpu.tensor([M, K]);
    const flops = 2 * M * N * K;
    const tf = await time(() => matmul(gpu, xt, W, { M, N, K, transB: true, out: y }), flops);
    const tq = await time(() => qmatmul(gpu, xt, qw, { M, out: y }), flops);
    const tfb = await time(() => matmul(gpu, dy, W, { M, N: K, K: N, out: dx }), flops);
    const tqb = await time(() => qmatmulBackward(gpu, dy, qw, { M, out: dx }), flops);
    const g = (t: number) => `${t.toFixed(3)} ms (${(flops / t / 1e6).toFixed(1)})`;
    console.log(`M${M} N${N} K${K}  forward: f32 ${g(tf)}  nf4 ${g(tq)}   backward: f32 ${g(tfb)}  nf4 ${g(tqb)}`);
    for (const t of [W, xt, dy, y, dx]) t.release();
    qw.release();
  }
  gpu.destroy();
}
