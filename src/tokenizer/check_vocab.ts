/**
 * Checks every loader's VocabSpec before a Tokenizer is built from it: a vocabulary that would
 * encode text to nothing (no tokens, empty token texts, a byte-level alphabet with holes, an SPM
 * vocabulary without its <0xNN> fallback tokens) or point special tokens outside itself is
 * refused at load, naming the file and the field, instead of tokenizing silently wrong.
 */
import { PeftError } from "../errors.ts";
import { BYTE_TO_CHAR } from "./byte_level.ts";
import { TokenType, type VocabSpec } from "./vocab_spec.ts";

/** The loader's names for the fields checked, for messages. */
export interface VocabFields {
  tokens: string;
  bosId: string;
  eosId: string;
  unkId: string;
  padId: string;
}

const hex = (b: number) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;

/** Throws TOKENIZER_BAD_VOCAB naming `spec.source` and the field; returns the spec unchanged. */
export function checkVocab(spec: VocabSpec, fields: VocabFields): VocabSpec {
  const bad = (field: string, msg: string) => new PeftError("TOKENIZER_BAD_VOCAB", `${spec.source}: ${field} ${msg}`);
  const n = spec.tokens.length;
  if (n === 0) throw bad(fields.tokens, "is empty (a vocabulary needs tokens)");
  for (const key of ["bosId", "eosId", "unkId", "padId"] as const) {
    const id = spec[key];
    if (id !== -1 && !(Number.isInteger(id) && id >= 0 && id < n)) throw bad(fields[key], `= ${id} is outside the vocabulary (0..${n - 1})`);
  }
  let empty = 0, first = -1;
  for (let i = 0; i < n; i++) {
    const t = spec.tokenTypes[i];
    if (spec.tokens[i] === "" && (t === TokenType.NORMAL || t === TokenType.BYTE)) {
      empty++;
      if (first < 0) first = i;
    }
  }
  if (empty > 0) throw bad(`${fields.tokens}[${first}]`, `is empty (${empty} normal token${empty > 1 ? "s have" : " has"} no text; text would encode to nothing)`);
  // Text that no merge covers is spelled with single-byte tokens: a byte-level alphabet needs all
  // 256 (llama.cpp's byte_to_token aborts without them); an SPM vocabulary its <0xNN> fallbacks.
  const needed = spec.byteLevel ? BYTE_TO_CHAR : spec.model === "spm" && spec.byteFallback ? Array.from({ length: 256 }, (_, b) => hex(b)) : [];
  if (needed.length) {
    const have = new Set(spec.tokens);
    const missing = needed.map((t, b) => [t, b] as const).filter(([t]) => !have.has(t));
    if (missing.length) {
      const eg = missing.slice(0, 3).map(([t, b]) => `${JSON.stringify(t)} for byte 0x${b.toString(16).padStart(2, "0")}`).join(", ");
      throw bad(fields.tokens, `lacks ${missing.length} of the 256 single-byte tokens of a ${spec.byteLevel ? "byte-level" : "byte-fallback"} vocabulary (${eg}${missing.length > 3 ? ", ..." : ""})`);
    }
  }
  return spec;
}
