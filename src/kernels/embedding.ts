/**
 * Token embedding lookup and its backward (shaders/embedding.wgsl). The backward sums the rows of
 * dy that share a token id without float atomics (WebGPU has none, and they would make training
 * non-reproducible): rows are chained by id, and the first row of each chain sums it in order.
 */
import { check } from "../errors.ts";
import { type Gpu, grid1d, type Tensor, UNUSED } from "../gpu/gpu.ts";

function checkIds(op: string, ids: Tensor): number {
  check(ids.dtype === "u32", "EMBEDDING_ARGS", `${op}: ids [${ids.shape}] must be u32 (got ${ids.dtype})`);
  check(ids.size < 0x80000000, "EMBEDDING_SHAPE", `${op}: ${ids.size} ids exceed 2^31`);
  return ids.size;
}

/** out[n] = table[ids[n]] ([N,C]); an id >= V gives a row of zeros. */
export function embedding(gpu: Gpu, table: Tensor, ids: Tensor, out?: Tensor): Tensor {
  const N = checkIds("embedding", ids);
  check(table.dtype === "f32" && table.shape.length === 2, "EMBEDDING_SHAPE", `embedding: table [${table.shape}] ${table.dtype} must be f32 [V,C]`);
  const [V, C] = table.shape;
  check(!out || (out.dtype === "f32" && out.size === N * C), "EMBEDDING_SHAPE", () => `embedding: out [${out!.shape}] must be f32 [${N},${C}]`);
  const dst = out ?? gpu.tensor([N, C]);
  gpu.dispatch("embedding", "gather", {
    bindings: { ids, link: UNUSED, src: table, dst },
    params: [N, C, V],
    workgroups: grid1d(N * C, 64),
  });
  return dst;
}

/** dTable[v] (+)= Σ_{n: ids[n] = v} dy[n] ([V,C]); deterministic. Accumulates into `dTable` when given, else starts from zeros. */
export function embeddingBackward(gpu: Gpu, dy: Tensor, ids: Tensor, V: number, dTable?: Tensor): Tensor {
  const N = checkIds("embeddingBackward", ids);
  check(Number.isInteger(V) && V > 0, "EMBEDDING_SHAPE", `embeddingBackward: V = ${V} must be a positive integer`);
  check(dy.dtype === "f32" && N > 0 && dy.size % N === 0, "EMBEDDING_SHAPE", `embeddingBackward: dy [${dy.shape}] must be f32 [${N},C] to match ${N} ids`);
  const C = dy.size / Math.max(N, 1);
  check(!dTable || (dTable.dtype === "f32" && dTable.size === V * C), "EMBEDDING_SHAPE", () => `embeddingBackward: dTable [${dTable!.shape}] must be f32 [${V},${C}]`);
  const dst = dTable ?? gpu.zeros([V, C], "f32", "gradients");
  const link = gpu.tensor([N], "u32");
  gpu.dispatch("embedding", "link_rows", { bindings: { ids, link, src: dy, dst }, params: [N, C, V], workgroups: grid1d(N, 64) });
  gpu.dispatch("embedding", "scatter_add", { bindings: { ids, link, src: dy, dst }, params: [N, C, V], workgroups: grid1d(N * C, 64) });
  link.release(); // later users of this pooled buffer are recorded after these dispatches
  return dst;
}

// ------------------------------------------------------------ CPU references

export function embeddingReference(table: Float32Array, ids: Uint32Array, V: number, C: number): Float32Array {
  const out = new Float32Array(ids.length * C);
  ids.forEach((id, n) => {
    if (id < V) out.set(table.subarray(id * C, (id + 1) * C), n * C);
  });
  return out;
}

/** f64 sums per (id, c), added to `dTable` when given. */
export function embeddingBackwardReference(dy: Float32Array, ids: Uint32Array, V: number, C: number, dTable?: Float32Array): Float32Array {
  const acc = new Float64Array(V * C);
  ids.forEach((id, n) => {
    if (id >= V) return;
    for (let c = 0; c < C; c++) acc[id * C + c] += dy[n * C + c];
  });
  return Float32Array.from(acc, (v, i) => v + (dTable ? dTable[i] : 0));
}
