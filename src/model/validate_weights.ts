/**
 * Checks a model's description at load (any family of families/family.ts), before anything is sized by it, whatever the file
 * format: every hyper-parameter is in range, the layer count agrees with the blk.N tensors
 * present, every tensor the architecture needs is there with the shape the config implies, and
 * no tensor is left unused (llama.cpp's loader refuses such files too: done_getting_tensors,
 * "wrong number of tensors"). A file that passes loads into a model that computes what the file
 * describes; one that does not gets one PeftError naming the file and the key or tensor.
 */
import { PeftError } from "../errors.ts";
import { biasName, HF_TO_GGUF_MODULE, type LlamaConfig, linearModules, linearShape } from "./config.ts";
import { family } from "./families/family.ts";

/** The hyper-parameters a file sets (architecture, tiedEmbeddings and the rope factors come from elsewhere). */
export type ConfigField = Exclude<keyof LlamaConfig, "architecture" | "tiedEmbeddings" | "ropeFreqFactors" | "ropeScaling">;

/** llama.cpp's Llama 3 rope frequency factors tensor ([ropeDim/2]). */
export const ROPE_FREQS = "rope_freqs.weight";

/** How a format names things in its messages and which error codes it uses. */
export interface WeightNaming {
  /** The file a config error is about (the GGUF path, or config.json). */
  configFile: string;
  /** The file's own key for a field (llama.block_count, num_hidden_layers). */
  key(field: ConfigField): string;
  /** A tensor's own name and the file it lives in, from its GGUF name. */
  tensor(ggufName: string): { file: string; name: string };
  codes: { badKey: string; missingTensor: string; badTensor: string; unusedTensor: string };
}

/** Longest context accepted (llama 4 Scout's 10M fits); beyond it the value is corrupt. */
export const MAX_CONTEXT_LENGTH = 1 << 24;
/** The first tensor every block has (named when a layer has none). */
const FIRST_BLOCK_TENSOR = "attn_norm";

/** Tensors of llama.cpp features we do not run, refused by name with the reason. */
const UNSUPPORTED_TENSORS: [RegExp, string][] = [
  [/^(blk\.\d+\.)?rope_factors_(long|short)\.weight$/, "LongRoPE scaling (Phi-3 128k, rope_factors_long/short) is not supported"],
  [/^blk\.\d+\.ffn_(gate|up|down)_exps\.weight$/, "mixture-of-experts layers are not supported"],
  [/^blk\.\d+\.attn_qkv\.bias$/, "a fused q/k/v bias is not supported"],
];
let enabled = true;
/** Turns the checks off and on: only for bench/load.ts, which measures what they cost. */
export function setWeightValidation(on: boolean): void {
  enabled = on;
}

/**
 * Expected [out, in] / [n] shapes of every GGUF-named tensor of a model of c's family;
 * `ropeFreqs`: the file has Llama 3 rope factors (default: when the config holds them).
 */
export function expectedShapes(c: LlamaConfig, ropeFreqs = !!c.ropeFreqFactors): Map<string, number[]> {
  const m = new Map<string, number[]>([["token_embd.weight", [c.vocabSize, c.dim]], ["output_norm.weight", [c.dim]]]);
  if (!c.tiedEmbeddings) m.set("output.weight", [c.vocabSize, c.dim]);
  if (ropeFreqs) m.set(ROPE_FREQS, [c.ropeDim / 2]);
  for (let l = 0; l < c.nLayers; l++) {
    m.set(`blk.${l}.attn_norm.weight`, [c.dim]);
    m.set(`blk.${l}.ffn_norm.weight`, [c.dim]);
    for (const mod of linearModules(c)) {
      const shape = linearShape(c, mod);
      m.set(`blk.${l}.${HF_TO_GGUF_MODULE[mod]}.weight`, shape);
      const bias = biasName(c, mod, l);
      if (bias) m.set(bias, [shape[0]]);
    }
  }
  return m;
}

/** The config fields a tensor's expected shape comes from (for messages). */
function shapeSources(ggufName: string): ConfigField[] {
  const base = /^blk\.\d+\.([a-z_]+)\.(weight|bias)$/.exec(ggufName)?.[1] ?? ggufName;
  switch (base) {
    case "token_embd.weight":
    case "output.weight": return ["vocabSize", "dim"];
    case ROPE_FREQS: return ["ropeDim"];
    case "attn_qkv": return ["nHeads", "nKvHeads", "headDim", "dim"];
    case "attn_q": return ["nHeads", "headDim", "dim"];
    case "attn_k":
    case "attn_v": return ["nKvHeads", "headDim", "dim"];
    case "attn_output": return ["dim", "nHeads", "headDim"];
    case "ffn_gate":
    case "ffn_up":
    case "ffn_down": return ["hiddenDim", "dim"];
    default: return ["dim"];
  }
}

/** Ranges of the hyper-parameters, each error naming the file's key. */
export function checkConfig(c: LlamaConfig, n: WeightNaming): void {
  const bad = (field: ConfigField, why: string) =>
    new PeftError(n.codes.badKey, `${n.configFile}: ${n.key(field)} ${why}, got ${JSON.stringify(c[field]) ?? String(c[field])}`);
  const ints: ConfigField[] = ["vocabSize", "dim", "hiddenDim", "nLayers", "nHeads", "nKvHeads", "headDim", "ropeDim", "contextLength"];
  for (const f of ints) {
    if (!Number.isSafeInteger(c[f]) || (c[f] as number) < 1) throw bad(f, "must be a positive integer");
  }
  if (c.contextLength > MAX_CONTEXT_LENGTH) throw bad("contextLength", `must be at most ${MAX_CONTEXT_LENGTH}`);
  if (c.headDim % 2) throw bad("headDim", "must be even (rotary embedding pairs)");
  if (c.ropeDim % 2 || c.ropeDim > c.headDim) throw bad("ropeDim", `must be even and at most the head dimension ${c.headDim} (${n.key("headDim")})`);
  if (c.nHeads % c.nKvHeads) throw bad("nKvHeads", `must divide ${n.key("nHeads")} ${c.nHeads}`);
  const w = c.slidingWindow ?? 0;
  if (!Number.isSafeInteger(w) || w < 0) throw bad("slidingWindow", "must be an integer >= 0 (0: no window)");
  if (family(c).rope === "normal" && c.ropeDim !== c.headDim) {
    // GGUF's q/k permutation is per head of headDim; llama.cpp's llama graph asserts n_rot == head dim.
    throw bad("ropeDim", `must equal the head dimension ${c.headDim} (${n.key("headDim")}) for the ${c.architecture} architecture (partial rotary is supported for NEOX families: qwen2, phi3)`);
  }
  if (!(Number.isFinite(c.ropeBase) && c.ropeBase > 0)) throw bad("ropeBase", "must be a finite number > 0");
  if (!(Number.isFinite(c.normEps) && c.normEps > 0 && c.normEps < 1)) throw bad("normEps", "must be a number in (0, 1)");
}

/**
 * The tensors present (GGUF names -> shapes) against the config: the layer count first (so a
 * corrupt count sizes nothing), then every expected tensor and shape, then anything left unused.
 */
export function checkTensors(c: LlamaConfig, shapes: Map<string, number[]>, n: WeightNaming, ropeFreqs = !!c.ropeFreqFactors): void {
  const present = new Set<number>();
  for (const name of shapes.keys()) {
    const m = /^blk\.(\d+)\./.exec(name);
    if (m) present.add(Number(m[1]));
  }
  const layers = present.size ? Math.max(...present) + 1 : 0;
  if (c.nLayers !== layers) {
    const have = layers ? `tensors for ${layers} layers (blk.0 .. blk.${layers - 1})` : "no layer tensors";
    throw new PeftError(n.codes.badKey, `${n.configFile}: ${n.key("nLayers")} is ${c.nLayers} but the weights have ${have}`);
  }
  // Every layer below the count must have tensors: this also bounds the count by the tensors
  // present before the expected shapes are listed (a lone blk.2147483647 sizes nothing).
  if (present.size < layers) {
    let missing = 0;
    while (present.has(missing)) missing++;
    const t = n.tensor(`blk.${missing}.${FIRST_BLOCK_TENSOR}.weight`);
    throw new PeftError(n.codes.missingTensor, `${t.file}: layer ${missing} has no tensors (${t.name} is missing; ${n.key("nLayers")} is ${c.nLayers})`);
  }
  const expected = expectedShapes(c, ropeFreqs);
  for (const [name, want] of expected) {
    const got = shapes.get(name);
    const t = n.tensor(name);
    if (!got) {
      const why = name.endsWith(".bias") ? ` (the ${c.architecture} architecture has q/k/v biases)` : "";
      throw new PeftError(n.codes.missingTensor, `${t.file}: tensor ${t.name} is missing${why}`);
    }
    if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
      const from = [...new Set(shapeSources(name))].map((f) => n.key(f)).join(", ");
      throw new PeftError(n.codes.badTensor, `${t.file}: tensor ${t.name} has shape [${got}], expected [${want}] (from ${from})`);
    }
  }
  for (const name of shapes.keys()) {
    if (expected.has(name)) continue;
    const t = n.tensor(name);
    const why = UNSUPPORTED_TENSORS.find(([re]) => re.test(name))?.[1];
    if (why) throw new PeftError("UNSUPPORTED", `${t.file}: tensor ${t.name}: ${why}`);
    if (name === ROPE_FREQS) {
      throw new PeftError(n.codes.unusedTensor, `${t.file}: tensor ${t.name} (Llama 3 rope scaling) is not used by the ${c.architecture} architecture (supported for: llama)`);
    }
    throw new PeftError(n.codes.unusedTensor, `${t.file}: tensor ${t.name} is not used by the ${c.architecture} architecture (refused rather than ignored)`);
  }
}

/**
 * Both checks, in order (skipped only when bench/load.ts turns validation off). `ropeFreqs`: the
 * file's rope_freqs.weight is expected (read into the config after this check sized it).
 */
export function validateLlamaWeights(c: LlamaConfig, shapes: Map<string, number[]>, n: WeightNaming, ropeFreqs = !!c.ropeFreqFactors): void {
  if (!enabled) return;
  checkConfig(c, n);
  checkTensors(c, shapes, n, ropeFreqs);
}

/** Llama 3 rope factors read from a file: ropeDim/2 finite positive numbers, else one error naming the tensor. */
export function checkRopeFreqs(data: Float32Array, c: LlamaConfig, where: { file: string; name: string }, code: string): Float32Array {
  if (data.length !== c.ropeDim / 2) throw new PeftError(code, `${where.file}: tensor ${where.name} has ${data.length} values, expected ${c.ropeDim / 2} (rope dimension / 2)`);
  const bad = data.findIndex((v) => !(Number.isFinite(v) && v > 0));
  if (bad >= 0) throw new PeftError(code, `${where.file}: tensor ${where.name} value ${bad} is ${data[bad]} (rope frequency factors must be finite and > 0)`);
  return data;
}
