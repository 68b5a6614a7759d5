/**
 * A teacher's next-token distributions precomputed to a file, for teachers that do not fit on the
 * GPU beside the student: for every sequence the training run will see (train split, then eval
 * split, with the run's data options), the top-k token ids and their log-probabilities at the
 * distillation temperature. safetensors: `input_ids` I32 [E, T] (to check that the run's data is
 * the data the file was made from), `topk_ids` I32 [E, T, k], `topk_logprobs` F32 [E, T, k];
 * metadata: format, temperature, top_k, vocab_size, seq_len, teacher.
 *
 * During distillation a row's distribution is the stored top-k probabilities, with the rest of
 * the mass (1 - their sum) spread evenly over the other V - k tokens: exact when k = V, and always
 * a proper distribution, so reverse KL and the JSD stay finite.
 */
import { PeftError } from "../errors.ts";
import { readSafetensors, writeSafetensors } from "../io/safetensors.ts";
import { batchLogits, type TrainBatch } from "../model/llama_train.ts";
import type { LlamaGpu } from "../model/llama.ts";
import type { Hooks } from "../model/sites.ts";
import type { Tensor } from "../gpu/gpu.ts";
import type { Example } from "./data.ts";

const FORMAT = "edge-peft-teacher-topk/1";

/** The tail log-probability when the top-k hold `mass`; floored so a top-k holding everything stays finite. */
function tailLogProb(mass: number, V: number, k: number): number {
  return k >= V ? -Infinity : Math.log(Math.max(1 - mass, 1e-30) / (V - k));
}

/** Top-k (ids, log-probabilities at `temperature`) of one logits row, highest first. */
export function topKLogProbs(row: Float32Array, k: number, temperature: number): { ids: Int32Array; logProbs: Float32Array } {
  let mx = -Infinity;
  for (const v of row) mx = Math.max(mx, v / temperature);
  let se = 0;
  for (const v of row) se += Math.exp(v / temperature - mx);
  const lse = mx + Math.log(se);
  const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b).slice(0, k);
  return { ids: Int32Array.from(order), logProbs: Float32Array.from(order, (j) => row[j] / temperature - lse) };
}

export interface TopKWriteOptions {
  /** Tokens kept per position (1..V). */
  topK: number;
  /** The distillation temperature the log-probabilities are taken at. */
  temperature: number;
  /** Sequences per forward pass. */
  batchSize: number;
  /** Recorded in the metadata (the teacher's path). */
  teacher: string;
}

/**
 * Runs the teacher over `examples` (numbered as the trainer numbers them: train, then eval) and
 * writes their top-k log-probabilities to `path` (atomically). Returns the file's size in bytes.
 */
export async function writeTeacherTopK(teacher: { llama: LlamaGpu; hooks: Hooks<Tensor> }, examples: readonly Example[], path: string, o: TopKWriteOptions): Promise<number> {
  const V = teacher.llama.config.vocabSize;
  if (!(Number.isInteger(o.topK) && o.topK >= 1 && o.topK <= V)) throw new PeftError("BAD_DISTILL_OPTION", `topK must be an integer in 1..${V} (the vocabulary), got ${o.topK}`);
  if (!(Number.isFinite(o.temperature) && o.temperature > 0)) throw new PeftError("BAD_DISTILL_OPTION", `temperature must be a number > 0, got ${o.temperature}`);
  if (examples.length === 0) throw new PeftError("DATA_EMPTY", "no sequences to run the teacher on");
  const E = examples.length, T = examples[0].input.length, k = o.topK;
  const inputIds = new Int32Array(E * T), ids = new Int32Array(E * T * k), logProbs = new Float32Array(E * T * k);
  for (let e0 = 0; e0 < E; e0 += o.batchSize) {
    const rows = examples.slice(e0, e0 + o.batchSize);
    const batch: TrainBatch = { B: rows.length, T, inputs: new Int32Array(rows.length * T), targets: new Int32Array(rows.length * T) };
    rows.forEach((e, i) => (batch.inputs as Int32Array).set(e.input, i * T));
    inputIds.set(batch.inputs as Int32Array, e0 * T);
    const t = batchLogits(teacher, batch);
    const logits = await teacher.llama.gpu.readF32(t);
    t.release();
    for (let r = 0; r < rows.length * T; r++) {
      const top = topKLogProbs(logits.subarray(r * V, (r + 1) * V), k, o.temperature);
      ids.set(top.ids, (e0 * T + r) * k);
      logProbs.set(top.logProbs, (e0 * T + r) * k);
    }
  }
  await writeSafetensors(path, [
    { name: "input_ids", dtype: "I32", shape: [E, T], data: inputIds },
    { name: "topk_ids", dtype: "I32", shape: [E, T, k], data: ids },
    { name: "topk_logprobs", dtype: "F32", shape: [E, T, k], data: logProbs },
  ], { format: FORMAT, temperature: String(o.temperature), top_k: String(k), vocab_size: String(V), seq_len: String(T), teacher: o.teacher });
  return inputIds.byteLength + ids.byteLength + logProbs.byteLength;
}

/** A top-k file in host memory, answering a batch's rows as dense log-probabilities. */
export class TeacherTopK {
  private constructor(
    readonly path: string,
    readonly temperature: number,
    readonly topK: number,
    readonly vocabSize: number,
    readonly seqLen: number,
    readonly sequences: number,
    private readonly inputIds: Int32Array,
    private readonly ids: Int32Array,
    private readonly logProbs: Float32Array,
  ) {}

  static async load(path: string): Promise<TeacherTopK> {
    const f = await readSafetensors(path);
    try {
      const m = f.metadata;
      if (m.format !== FORMAT) throw new PeftError("TEACHER_FILE_INVALID", `${path}: not a teacher top-k file (metadata format ${JSON.stringify(m.format)}, expected ${FORMAT})`);
      const num = (k: string) => {
        const v = Number(m[k]);
        if (!Number.isFinite(v) || v <= 0) throw new PeftError("TEACHER_FILE_INVALID", `${path}: metadata ${k} = ${JSON.stringify(m[k])} is not a positive number`);
        return v;
      };
      const [temperature, k, V, T] = [num("temperature"), num("top_k"), num("vocab_size"), num("seq_len")];
      const shape = (name: string, want: number[]) => {
        const info = f.tensors.get(name);
        if (!info || info.shape.join() !== want.join()) throw new PeftError("TEACHER_FILE_INVALID", `${path}: ${name} must be [${want}], got ${info ? `[${info.shape}]` : "nothing"}`);
      };
      const E = f.tensors.get("input_ids")?.shape[0] ?? 0;
      shape("input_ids", [E, T]);
      shape("topk_ids", [E, T, k]);
      shape("topk_logprobs", [E, T, k]);
      const i32 = async (name: string) => new Int32Array((await f.read(name)).slice().buffer);
      return new TeacherTopK(path, temperature, k, V, T, E, await i32("input_ids"), await i32("topk_ids"), await f.readF32("topk_logprobs"));
    } finally {
      await f.close();
    }
  }

  /**
   * Dense log-probabilities [n, V] for rows r0..r0+n of `batch` (rows are (sequence, position)
   * pairs, sequences by batch.rowIds). Refuses rows whose tokens are not the file's.
   */
  rows(batch: TrainBatch, r0: number, n: number): Float32Array {
    const V = this.vocabSize, k = this.topK, T = batch.T;
    const out = new Float32Array(n * V);
    for (let i = 0; i < n; i++) {
      const r = r0 + i, b = Math.floor(r / T), t = r % T;
      const id = batch.rowIds?.[b] ?? -1;
      if (!(id >= 0 && id < this.sequences && t < this.seqLen) || this.inputIds[id * this.seqLen + t] !== batch.inputs[r]) {
        throw new PeftError(
          "TEACHER_FILE_MISMATCH",
          `${this.path} was made for other data (sequence ${id}, position ${t}): make it again with this run's data options (data, seq-len, stride, eval-fraction, seed, max-examples, packing)`,
        );
      }
      const at = (id * this.seqLen + t) * k;
      let mass = 0;
      for (let j = 0; j < k; j++) mass += Math.exp(this.logProbs[at + j]);
      out.fill(tailLogProb(mass, V, k), i * V, (i + 1) * V);
      for (let j = 0; j < k; j++) out[i * V + this.ids[at + j]] = this.logProbs[at + j];
    }
    return out;
  }
}
