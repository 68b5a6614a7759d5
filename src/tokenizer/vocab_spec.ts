/**
 * The loader-independent description of a vocabulary: GGUF metadata and tokenizer.json both
 * become a VocabSpec, and the Tokenizer only ever sees this.
 */

/** GGUF token_type values (llama.cpp `llama_token_type`). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** Pre-tokenizer families the WASM implements (see wasm/tokenizer/pretok.ts). */
export type PreTokenizer =
  | "none" | "gpt2" | "llama3" | "qwen2" | "digits-gpt2" | "metaspace-split"
  // llama.cpp regex-list families (wasm/tokenizer/pretok.ts splitFamily)
  | "deepseek-llm" | "deepseek-coder" | "deepseek-v3" | "falcon" | "default" | "gpt-4o" | "tekken" | "bloom" | "viking";

export interface AddedToken {
  id: number;
  content: string;
  /** Special (control) tokens are only parsed with parseSpecial; others always are. */
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
}

export interface VocabSpec {
  /** "spm": score-driven SentencePiece BPE; "bpe": rank-driven merges. */
  model: "spm" | "bpe";
  /** Tokens are spelled in GPT-2's byte->unicode alphabet (byte-level BPE). */
  byteLevel: boolean;
  tokens: string[];
  /** SPM scores (one per token). */
  scores?: Float32Array;
  /** BPE merges as (left, right) token strings, in rank order. */
  merges?: Array<[string, string]>;
  /** One TokenType per token. */
  tokenTypes: Uint8Array;
  pre: PreTokenizer;
  bosId: number;
  eosId: number;
  unkId: number;
  padId: number;
  addBos: boolean;
  addEos: boolean;
  /** SPM: prefix the text (and text after a special token) with a space (llama.cpp add_space_prefix). */
  addSpacePrefix: boolean;
  /**
   * HF SentencePiece-style BPE (Llama-2 / Mistral tokenizer.json): ' ' becomes ▁ before BPE, and
   * a ▁ is put in front of a text fragment: "force" every fragment (normalizer Prepend), "always"
   * every fragment not already starting with one, "first" only the text's first fragment when it
   * does not (Metaspace prepend_scheme), "never".
   */
  metaspace?: "force" | "always" | "first" | "never";
  /** HF fuse_unk: consecutive unknown chars become one unk token. */
  fuseUnk?: boolean;
  /**
   * How decode drops the space that the prefix ▁ became: "first-text" (llama.cpp: the first
   * non-special piece), "strip" (HF Strip decoder: leading spaces of the whole output, up to
   * decodeStripCount), "metaspace" (HF Metaspace decoder: the first token's ▁ are dropped).
   * Default: "first-text" when addSpacePrefix, else none.
   */
  decodeStrip?: "first-text" | "strip" | "metaspace";
  decodeStripCount?: number;
  /** <0xNN> tokens decode to their byte (HF ByteFallback decoder); default: when byteFallback. */
  decodeByteFallback?: boolean;
  /** HF BPE ignore_merges: a pre-token that is itself in the vocab is emitted whole. */
  ignoreMerges: boolean;
  /** Unknown chars become <0xNN> byte tokens (SPM, HF byte_fallback). */
  byteFallback: boolean;
  /** Unicode normalization applied before encoding (HF normalizer NFC / NFKC ...). */
  normalize?: "NFC" | "NFD" | "NFKC" | "NFKD";
  addedTokens: AddedToken[];
  /** Added tokens outside the BPE model's vocab (HF): BPE must never produce them. */
  notInModel?: Set<number>;
  chatTemplate?: string;
  /** Tokens that end generation (tokenizer/eog.ts); absent: the EOS alone. */
  eogIds?: number[];
  /** Chat template variables bos_token / eos_token (tokenizer_config.json), else the BOS/EOS text. */
  bosToken?: string;
  eosToken?: string;
  /** Where this came from, for error messages. */
  source: string;
}
