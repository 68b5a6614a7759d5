/**
 * VocabSpec from GGUF metadata (the tokenizer.ggml.* keys llama.cpp writes and reads).
 */
import { PeftError } from "../errors.ts";
import type { GgufFile, GgufScalar } from "../io/gguf.ts";
import { checkVocab } from "./check_vocab.ts";
import { type AddedToken, type PreTokenizer, TokenType, type VocabSpec } from "./vocab_spec.ts";
import { endOfGenerationIds } from "./eog.ts";

/**
 * tokenizer.ggml.pre values (llama.cpp llama-vocab.cpp) grouped by the regex list they use; each
 * family's list is written out in wasm/tokenizer/pretok.ts and checked piece by piece against
 * JavaScript RegExp in tests/tokenizer/pretok_families.test.ts.
 */
export const GGUF_PRE_TYPES: Record<string, PreTokenizer> = {
  "gpt-2": "gpt2", "phi-2": "gpt2", "roberta-bpe": "gpt2", "mpt": "gpt2", "olmo": "gpt2", "jais": "gpt2", "exaone4": "gpt2",
  "llama3": "llama3", "llama-v3": "llama3", "llama-bpe": "llama3", "falcon3": "llama3", "falcon-h1": "llama3", "pixtral": "llama3",
  "midm-2.0": "llama3", "lfm2": "llama3", "dbrx": "llama3", "smaug-bpe": "llama3", "chatglm-bpe": "llama3", "glm4": "llama3",
  "qwen2": "qwen2", "deepseek-r1-qwen": "qwen2", "kormo": "qwen2", "megrez": "qwen2", "stablelm2": "qwen2", "hunyuan": "qwen2",
  "grok-2": "qwen2",
  "starcoder": "digits-gpt2", "refact": "digits-gpt2", "command-r": "digits-gpt2", "smollm": "digits-gpt2",
  "codeshell": "digits-gpt2", "exaone": "digits-gpt2", "minerva-7b": "digits-gpt2",
  "deepseek-llm": "deepseek-llm",
  "deepseek-coder": "deepseek-coder",
  "deepseek-v3": "deepseek-v3", "hunyuan-dense": "deepseek-v3",
  "falcon": "falcon",
  "gpt-4o": "gpt-4o", "llama4": "gpt-4o", "minimax-m2": "gpt-4o",
  "tekken": "tekken",
  "default": "default",
  "bloom": "bloom", "poro-chat": "bloom", "gpt3-finnish": "bloom",
  "viking": "viking",
};

/** The tokenizer.ggml.pre values for which llama.cpp sets ignore_merges. */
const IGNORE_MERGES_PRE = new Set(["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "tekken"]);

/** A special token id: absent, -1 and 0xFFFFFFFF (llama.cpp's LLAMA_TOKEN_NULL) mean none; anything else is checked by checkVocab. */
function idOrNone(v: GgufScalar | GgufScalar[] | undefined): number {
  if (v === undefined) return -1;
  const n = Array.isArray(v) ? NaN : Number(v);
  return n === -1 || n === 0xffffffff ? -1 : n;
}

export function vocabFromGGUF(g: GgufFile, source = g.source.name): VocabSpec {
  const model = g.get<string>("tokenizer.ggml.model");
  if (model === undefined) throw new PeftError("TOKENIZER_MISSING_FIELD", `${source}: no tokenizer.ggml.model (not a GGUF with a vocabulary)`);
  if (model !== "llama" && model !== "gpt2") {
    throw new PeftError("TOKENIZER_UNSUPPORTED_MODEL", `${source}: tokenizer.ggml.model = ${JSON.stringify(model)} is not supported (supported: llama, gpt2)`);
  }
  const tokens = g.get<GgufScalar[]>("tokenizer.ggml.tokens");
  if (!Array.isArray(tokens) || tokens.length === 0 || typeof tokens[0] !== "string") {
    throw new PeftError("TOKENIZER_MISSING_FIELD", `${source}: tokenizer.ggml.tokens is missing or not a string array`);
  }
  const n = tokens.length;
  const types = new Uint8Array(n).fill(TokenType.NORMAL);
  const rawTypes = g.get<GgufScalar[]>("tokenizer.ggml.token_type");
  if (rawTypes !== undefined) {
    if (!Array.isArray(rawTypes) || rawTypes.length !== n) {
      throw new PeftError("TOKENIZER_BAD_FIELD", `${source}: tokenizer.ggml.token_type has ${Array.isArray(rawTypes) ? rawTypes.length : "no"} entries, expected ${n}`);
    }
    for (let i = 0; i < n; i++) types[i] = Number(rawTypes[i]);
  }
  let scores: Float32Array | undefined;
  const rawScores = g.get<GgufScalar[]>("tokenizer.ggml.scores");
  if (rawScores !== undefined) {
    if (!Array.isArray(rawScores) || rawScores.length !== n) {
      throw new PeftError("TOKENIZER_BAD_FIELD", `${source}: tokenizer.ggml.scores has ${Array.isArray(rawScores) ? rawScores.length : "no"} entries, expected ${n}`);
    }
    scores = Float32Array.from(rawScores as number[]);
  }
  const spm = model === "llama";
  let merges: Array<[string, string]> | undefined;
  let pre: PreTokenizer = "none";
  let ignoreMerges = false;
  if (!spm) {
    const rawMerges = g.get<GgufScalar[]>("tokenizer.ggml.merges");
    if (!Array.isArray(rawMerges)) throw new PeftError("TOKENIZER_MISSING_FIELD", `${source}: tokenizer.ggml.merges is required for tokenizer.ggml.model = gpt2`);
    merges = rawMerges.map((m, i) => {
      const s = String(m);
      const sp = s.indexOf(" ", 1);
      if (sp < 0) throw new PeftError("TOKENIZER_BAD_FIELD", `${source}: tokenizer.ggml.merges[${i}] = ${JSON.stringify(s)} has no space`);
      return [s.slice(0, sp), s.slice(sp + 1)];
    });
    const preName = g.get<string>("tokenizer.ggml.pre");
    if (preName === undefined) throw new PeftError("TOKENIZER_MISSING_FIELD", `${source}: tokenizer.ggml.pre is missing (needed to pick the pre-tokenizer for a gpt2 vocab)`);
    const p = GGUF_PRE_TYPES[String(preName)];
    if (!p) {
      throw new PeftError(
        "TOKENIZER_UNKNOWN_PRE",
        `${source}: unknown tokenizer.ggml.pre = ${JSON.stringify(preName)} (supported: ${Object.keys(GGUF_PRE_TYPES).join(", ")})`,
      );
    }
    pre = p;
    ignoreMerges = IGNORE_MERGES_PRE.has(String(preName));
  }
  const addedTokens: AddedToken[] = [];
  for (let id = 0; id < n; id++) {
    const t = types[id];
    if (t === TokenType.CONTROL || t === TokenType.USER_DEFINED || t === TokenType.UNKNOWN) {
      const content = String(tokens[id]);
      if (content.length > 0) addedTokens.push({ id, content, special: t !== TokenType.USER_DEFINED, lstrip: false, rstrip: false });
    }
  }
  const flag = (key: string, dflt: boolean) => {
    const v = g.get(key);
    return typeof v === "boolean" ? v : dflt;
  };
  const tmpl = g.get("tokenizer.chat_template");
  // EOT / EOM ids (Llama 3: <|eot_id|>, <|eom_id|>) end generation as EOS does, in range or refused by name.
  const turnEnds = ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"].map((key) => {
    const id = idOrNone(g.get(key));
    if (id !== -1 && !(Number.isInteger(id) && id >= 0 && id < n)) {
      throw new PeftError("TOKENIZER_BAD_VOCAB", `${source}: ${key} = ${id} is outside the vocabulary (0..${n - 1})`);
    }
    return id;
  });
  return checkVocab({
    model: spm ? "spm" : "bpe",
    byteLevel: !spm,
    tokens: tokens as string[],
    scores,
    merges,
    tokenTypes: types,
    pre,
    bosId: idOrNone(g.get("tokenizer.ggml.bos_token_id")),
    eosId: idOrNone(g.get("tokenizer.ggml.eos_token_id")),
    unkId: idOrNone(g.get("tokenizer.ggml.unknown_token_id")),
    padId: idOrNone(g.get("tokenizer.ggml.padding_token_id")),
    addBos: flag("tokenizer.ggml.add_bos_token", spm),
    addEos: flag("tokenizer.ggml.add_eos_token", false),
    addSpacePrefix: flag("tokenizer.ggml.add_space_prefix", spm),
    ignoreMerges,
    byteFallback: spm,
    addedTokens,
    chatTemplate: typeof tmpl === "string" ? tmpl : undefined,
    eogIds: endOfGenerationIds(tokens as string[], [idOrNone(g.get("tokenizer.ggml.eos_token_id")), ...turnEnds]),
    source,
  }, {
    tokens: "tokenizer.ggml.tokens",
    bosId: "tokenizer.ggml.bos_token_id",
    eosId: "tokenizer.ggml.eos_token_id",
    unkId: "tokenizer.ggml.unknown_token_id",
    padId: "tokenizer.ggml.padding_token_id",
  });
}
