// Pre-tokenizers: hand-written matchers equivalent to the regexes of GPT-2, Llama-3 and Qwen2
// (as llama.cpp's unicode.cpp does), driven by the generated Unicode class tables. They walk
// UTF-8 bytes directly and hand each word to `word(start, end)` so nothing is materialised.
import { unicodeClass, CLS_L, CLS_M, CLS_N, CLS_P, CLS_S, CLS_WS } from "./unicode_tables";

const EXISTS: u8 = 0x80; // set for every code point inside the text (regex "any char")

let base: usize = 0;
let end: i32 = 0;
let cpLen: i32 = 1;

/** Decodes the code point at byte offset i (sets cpLen); invalid bytes read as U+FFFD. */
function cpAt(i: i32): u32 {
  const p = base + <usize>i;
  const b0 = <u32>load<u8>(p);
  if (b0 < 0x80) { cpLen = 1; return b0; }
  if ((b0 >> 5) == 6 && i + 1 < end) { cpLen = 2; return ((b0 & 0x1f) << 6) | (<u32>load<u8>(p, 1) & 0x3f); }
  if ((b0 >> 4) == 14 && i + 2 < end) {
    cpLen = 3;
    return ((b0 & 0x0f) << 12) | ((<u32>load<u8>(p, 1) & 0x3f) << 6) | (<u32>load<u8>(p, 2) & 0x3f);
  }
  if ((b0 >> 3) == 30 && i + 3 < end) {
    cpLen = 4;
    return ((b0 & 0x07) << 18) | ((<u32>load<u8>(p, 1) & 0x3f) << 12) | ((<u32>load<u8>(p, 2) & 0x3f) << 6) | (<u32>load<u8>(p, 3) & 0x3f);
  }
  cpLen = 1;
  return 0xfffd;
}

// Class bits | EXISTS of the ASCII code points, so the common case skips decoding.
const ASCII = heap.alloc(128);
for (let c: u32 = 0; c < 128; c++) store<u8>(ASCII + <usize>c, unicodeClass(c) | EXISTS);

// @ts-ignore: decorator
@inline function flagsAt(i: i32): u8 {
  if (i >= end) return 0;
  const b = <u32>load<u8>(base + <usize>i);
  if (b < 0x80) {
    cpLen = 1;
    return load<u8>(ASCII + <usize>b);
  }
  return unicodeClass(cpAt(i)) | EXISTS;
}

// @ts-ignore: decorator
@inline function nextPos(i: i32): i32 {
  cpAt(i);
  return i + cpLen;
}

// @ts-ignore: decorator
@inline function lower(c: u32): u32 {
  return c >= 0x41 && c <= 0x5a ? c + 32 : c;
}

/** Length of a contraction ('s 't 're 've 'm 'll 'd) at i, or 0. */
function contraction(i: i32, ignoreCase: bool): i32 {
  if (load<u8>(base + <usize>i) != 0x27 || i + 1 >= end) return 0;
  let c1 = cpAt(i + 1);
  const n1 = i + 1 + cpLen;
  if (ignoreCase) c1 = lower(c1);
  if (c1 == 0x73 || c1 == 0x74 || c1 == 0x6d || c1 == 0x64) return n1 - i;
  if (n1 >= end) return 0;
  let c2 = cpAt(n1);
  if (ignoreCase) c2 = lower(c2);
  if ((c1 == 0x72 && c2 == 0x65) || (c1 == 0x76 && c2 == 0x65) || (c1 == 0x6c && c2 == 0x6c)) return n1 + cpLen - i;
  return 0;
}

/** A code point's flags say `[^\s\p{L}\p{N}]` (it exists and is no space, letter or number). */
// @ts-ignore: decorator
@inline function isOther(f: u8): bool {
  return f != 0 && !(f & (CLS_WS | CLS_L | CLS_N));
}

/** End of the run `[^\s\p{L}\p{N}]*` starting at q. */
function otherRun(q: i32): i32 {
  while (isOther(flagsAt(q))) q += cpLen;
  return q;
}

/** End of `[\r\n]*` (with `slash`: `[\r\n/]*`) from q; ASCII only, so bytewise. */
function newlinesFrom(q: i32, slash: bool): i32 {
  while (q < end) {
    const c = load<u8>(base + <usize>q);
    if (c != 0x0d && c != 0x0a && !(slash && c == 0x2f)) break;
    q++;
  }
  return q;
}

/**
 * `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` over [s, e).
 * Words go to word(start, end) as byte offsets from `text`.
 */
export function splitGpt2(text: usize, s: i32, e: i32, word: (a: i32, b: i32) => void): void {
  base = text;
  end = e;
  let pos = s;
  while (pos < end) {
    const b0 = <u32>load<u8>(base + <usize>pos);
    if (b0 == 0x27) {
      const k = contraction(pos, false);
      if (k > 0) { word(pos, pos + k); pos += k; continue; }
    }
    const c0 = b0 < 0x80 ? b0 : cpAt(pos);
    const n0 = b0 < 0x80 ? pos + 1 : pos + cpLen;
    const p2 = c0 == 0x20 ? n0 : pos;
    const f2 = flagsAt(p2);
    if (f2 & CLS_L) {
      let q = p2;
      while (flagsAt(q) & CLS_L) q += cpLen;
      word(pos, q); pos = q; continue;
    }
    if (f2 & CLS_N) {
      let q = p2;
      while (flagsAt(q) & CLS_N) q += cpLen;
      word(pos, q); pos = q; continue;
    }
    if (isOther(f2)) {
      const q = otherRun(p2);
      word(pos, q); pos = q; continue;
    }
    pos = whitespace(pos, n0, false, word);
  }
}

/** Whitespace alternatives; with `newlines` also `\s*[\r\n]+` (Llama-3 / Qwen2) first. */
function whitespace(pos: i32, n0: i32, newlines: bool, word: (a: i32, b: i32) => void): i32 {
  let q = pos;
  let count = 0;
  let lastStart = pos;
  let lastRN = -1;
  while (flagsAt(q) & CLS_WS) {
    const c = cpAt(q);
    lastStart = q;
    q += cpLen;
    if (c == 0x0d || c == 0x0a) lastRN = q;
    count++;
  }
  if (newlines && lastRN >= 0) { word(pos, lastRN); return lastRN; }
  if (count > 1 && q < end) { word(pos, lastStart); return lastStart; }
  if (count > 0) { word(pos, q); return q; }
  word(pos, n0);
  return n0;
}

/**
 * Llama-3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
 * Qwen2 is the same with `\p{N}` (maxDigits = 1).
 */
export function splitLlama3(text: usize, s: i32, e: i32, maxDigits: i32, word: (a: i32, b: i32) => void): void {
  base = text;
  end = e;
  let pos = s;
  while (pos < end) {
    const b0 = <u32>load<u8>(base + <usize>pos);
    if (b0 == 0x27) {
      const k = contraction(pos, true);
      if (k > 0) { word(pos, pos + k); pos += k; continue; }
    }
    const c0 = b0 < 0x80 ? b0 : cpAt(pos);
    const n0 = b0 < 0x80 ? pos + 1 : pos + cpLen;
    const f0 = flagsAt(pos);
    if (!(c0 == 0x0d || c0 == 0x0a || (f0 & CLS_N))) {
      if ((f0 & CLS_L) || (flagsAt(n0) & CLS_L)) {
        let q = n0;
        while (flagsAt(q) & CLS_L) q += cpLen;
        word(pos, q); pos = q; continue;
      }
    }
    if (f0 & CLS_N) {
      let q = pos;
      let d = 0;
      while (d < maxDigits && (flagsAt(q) & CLS_N)) { q += cpLen; d++; }
      word(pos, q); pos = q; continue;
    }
    const p2 = c0 == 0x20 ? n0 : pos;
    const f2 = flagsAt(p2);
    if (isOther(f2)) {
      const q = newlinesFrom(otherRun(p2), false);
      word(pos, q); pos = q; continue;
    }
    pos = whitespace(pos, n0, true, word);
  }
}

/** `\p{N}` split first (each digit its own piece), then GPT-2 on the rest (StarCoder family). */
export function splitDigitsGpt2(text: usize, s: i32, e: i32, word: (a: i32, b: i32) => void): void {
  let pos = s;
  let segStart = s;
  while (pos < e) {
    base = text;
    end = e;
    const f = flagsAt(pos);
    const l = cpLen;
    if (f & CLS_N) {
      if (segStart < pos) splitGpt2(text, segStart, pos, word);
      word(pos, pos + l);
      segStart = pos + l;
    }
    pos += l;
  }
  if (segStart < e) splitGpt2(text, segStart, e, word);
}

// ---------------------------------------------------------------------------------------------
// The other llama.cpp families (src/llama-vocab.cpp, llm_tokenizer_bpe constructor). llama.cpp
// applies a *list* of regexes: each one splits every piece left by the previous one, and both the
// matches and the unmatched gaps between them become pieces (unicode_regex_split). Each regex is
// a matcher below (match at a position -> end, or -1); runStage() does the leftmost search, the
// gap bookkeeping and the hand-off to the next regex of the list.
//
// deepseek-llm:   "[\r\n]", "\s?[A-Za-zµÀ-ÖØ-öø-ƺ...𞤀-𞥃]+" (DSL_LETTERS below), "\s?[!-/:-~！-／：-～‘-‟　-。]+",
//                 "\s+$", "[一-龥ࠀ-一가-퟿]+", "\p{N}+"
// deepseek-coder: "[\r\n]", "\s?\p{L}+", "\s?\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\p{N}"
// deepseek-v3:    "\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
//                 "[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
// falcon:         "[\p{P}\$\+<=>\^~\|`]+", GPT2_LLAMACPP, "[0-9][0-9][0-9]"
// default (BPE):  "[\p{P}\$\+<=>\^~\|]+", GPT2_LLAMACPP, "\p{N}+", "[0-9][0-9][0-9]"
//   GPT2_LLAMACPP = "'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
// gpt-4o:         "[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?
//                  |[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?
//                  |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"   (one regex, no '|' breaks)
// tekken:         the gpt-4o regex without the two contraction groups and with \p{N} for \p{N}{1,3}
// bloom / poro-chat / gpt3-finnish: " ?[^(\s|.,!?…。，、।۔،)]+"
// viking:         " ?[^(\s|.,!?…。，、।۔،)]+", "\p{N}"
// \s is Unicode White_Space here (as in the splitters above).

export const FAM_DS_LLM: i32 = 6;
export const FAM_DS_CODER: i32 = 7;
export const FAM_DS_V3: i32 = 8;
export const FAM_FALCON: i32 = 9;
export const FAM_DEFAULT: i32 = 10;
export const FAM_GPT4O: i32 = 11;
export const FAM_TEKKEN: i32 = 12;
export const FAM_BLOOM: i32 = 13;
export const FAM_VIKING: i32 = 14;

const M_CRLF1: i32 = 1; // [\r\n]
const M_DSL_LET: i32 = 2; // \s?[DSL_LETTERS]+
const M_DSL_PUN: i32 = 3; // \s?[!-/:-~！-／：-～‘-‟　-。]+
const M_WS_END: i32 = 4; // \s+$
const M_CJK_A: i32 = 5; // [一-龥ࠀ-一가-퟿]+
const M_N_PLUS: i32 = 6; // \p{N}+
const M_L_PLUS: i32 = 7; // \s?\p{L}+
const M_P_PLUS: i32 = 8; // \s?\p{P}+
const M_N_ONE: i32 = 9; // \p{N}
const M_N_1_3: i32 = 10; // \p{N}{1,3}
const M_CJK_B: i32 = 11; // [一-龥぀-ゟ゠-ヿ]+
const M_DSV3: i32 = 12; // the deepseek-v3 main regex
const M_FALCON_P: i32 = 13; // [\p{P}\$\+<=>\^~\|`]+
const M_GPT2: i32 = 14; // GPT2_LLAMACPP
const M_D3: i32 = 15; // [0-9][0-9][0-9]
const M_DEFAULT_P: i32 = 16; // [\p{P}\$\+<=>\^~\|]+
const M_GPT4O: i32 = 17;
const M_TEKKEN: i32 = 18;
const M_BLOOM: i32 = 19; // ?[^(\s|.,!?…。，、।۔،)]+

// DeepSeek-LLM's letter class as (first, last) code point pairs. llama.cpp writes it with literal
// characters; some of them (U+1F7D, U+1FBE, U+1FD3, U+1FDB, U+2126, U+212A) are NFC singletons, so
// copies of that source that went through NFC show reversed ranges: these are the source's values.
const DSL_LETTERS = memory.data<u32>([
  0x41, 0x5a, 0x61, 0x7a, 0xb5, 0xb5, 0xc0, 0xd6, 0xd8, 0xf6, 0xf8, 0x1ba, 0x1bc, 0x1bf, 0x1c4, 0x293, 0x295, 0x2af,
  0x370, 0x373, 0x376, 0x376, 0x377, 0x377, 0x37b, 0x37d, 0x37f, 0x37f, 0x386, 0x386, 0x388, 0x38a, 0x38c, 0x38c,
  0x38e, 0x3a1, 0x3a3, 0x3f5, 0x3f7, 0x481, 0x48a, 0x52f, 0x531, 0x556, 0x10a0, 0x10c5, 0x13a0, 0x13f5, 0x13f8, 0x13fd,
  0x1c90, 0x1cba, 0x1cbd, 0x1cbf, 0x1d00, 0x1d2b, 0x1d6b, 0x1d77, 0x1d79, 0x1d9a, 0x1e00, 0x1f15, 0x1f18, 0x1f1d,
  0x1f20, 0x1f45, 0x1f48, 0x1f4d, 0x1f50, 0x1f57, 0x1f59, 0x1f59, 0x1f5b, 0x1f5b, 0x1f5d, 0x1f5d, 0x1f5f, 0x1f7d,
  0x1f80, 0x1fb4, 0x1fb6, 0x1fbc, 0x1fbe, 0x1fbe, 0x1fc2, 0x1fc4, 0x1fc6, 0x1fcc, 0x1fd0, 0x1fd3, 0x1fd6, 0x1fdb,
  0x1fe0, 0x1fec, 0x1ff2, 0x1ff4, 0x1ff6, 0x1ffc, 0x2102, 0x2102, 0x2107, 0x2107, 0x210a, 0x2113, 0x2115, 0x2115,
  0x2119, 0x211d, 0x2124, 0x2124, 0x2126, 0x2126, 0x2128, 0x2128, 0x212a, 0x212d, 0x212f, 0x2134, 0x2139, 0x2139,
  0x213c, 0x213f, 0x2145, 0x2149, 0x214e, 0x214e, 0x2183, 0x2183, 0x2184, 0x2184, 0x2c00, 0x2c7b, 0x2c7e, 0x2ce4,
  0x2ceb, 0x2cee, 0x2cf2, 0x2cf2, 0x2cf3, 0x2cf3, 0xa640, 0xa66d, 0xa680, 0xa69b, 0xa722, 0xa76f, 0xa771, 0xa787,
  0xa78b, 0xa78e, 0xab70, 0xabbf, 0xfb00, 0xfb06, 0xfb13, 0xfb17, 0xff21, 0xff3a, 0xff41, 0xff5a, 0x10400, 0x1044f,
  0x104b0, 0x104d3, 0x104d8, 0x104fb, 0x10c80, 0x10cb2, 0x10cc0, 0x10cf2, 0x118a0, 0x118df, 0x1e900, 0x1e943,
]);
const DSL_PAIRS: i32 = 87;

function inDslLetters(c: u32): bool {
  if (c < 0x80) return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  for (let i = 0; i < DSL_PAIRS; i++) {
    const a = load<u32>(DSL_LETTERS + <usize>(i * 8));
    if (c < a) return false;
    if (c <= load<u32>(DSL_LETTERS + <usize>(i * 8 + 4))) return true;
  }
  return false;
}

function inDslPunct(c: u32): bool {
  return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x7e) || (c >= 0xff01 && c <= 0xff0f) ||
    (c >= 0xff1a && c <= 0xff5e) || (c >= 0x2018 && c <= 0x201f) || (c >= 0x3000 && c <= 0x3002);
}

function inCjkA(c: u32): bool {
  return (c >= 0x4e00 && c <= 0x9fa5) || (c >= 0x0800 && c <= 0x4e00) || (c >= 0xac00 && c <= 0xd7ff);
}

function inCjkB(c: u32): bool {
  return (c >= 0x4e00 && c <= 0x9fa5) || (c >= 0x3040 && c <= 0x309f) || (c >= 0x30a0 && c <= 0x30ff);
}

function isAsciiPunct(c: u32): bool {
  return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
}

function isAsciiLetter(c: u32): bool {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** Falcon / default punctuation run members: \p{P} or one of $+<=>^~| (and ` when `tick`). */
function isFalconP(c: u32, tick: bool): bool {
  if (unicodeClass(c) & CLS_P) return true;
  return c == 0x24 || c == 0x2b || c == 0x3c || c == 0x3d || c == 0x3e || c == 0x5e || c == 0x7e || c == 0x7c || (tick && c == 0x60);
}

/** Bloom's [^(\s|.,!?…。，、।۔،)] (a code point inside the text). */
function isBloomWord(c: u32, f: u8): bool {
  if (f == 0 || (f & CLS_WS)) return false;
  return !(c == 0x28 || c == 0x29 || c == 0x7c || c == 0x2e || c == 0x2c || c == 0x21 || c == 0x3f || c == 0x2026 ||
    c == 0x3002 || c == 0xff0c || c == 0x3001 || c == 0x0964 || c == 0x06d4 || c == 0x060c);
}

/** Code point at i (0xffffffff past the end); sets cpLen. */
function cpOr(i: i32): u32 {
  if (i >= end) { cpLen = 0; return 0xffffffff; }
  return cpAt(i);
}

// Matcher kinds for a run of code points satisfying a predicate.
const R_DSL_LET: i32 = 0;
const R_DSL_PUN: i32 = 1;
const R_CJK_A: i32 = 2;
const R_N: i32 = 3;
const R_L: i32 = 4;
const R_P: i32 = 5;
const R_CJK_B: i32 = 6;
const R_FALCON: i32 = 7;
const R_DEFAULT: i32 = 8;
const R_LM: i32 = 9;
const R_PS: i32 = 10;
const R_BLOOM: i32 = 11;
const R_ASCII_LETTER: i32 = 12;

function member(kind: i32, i: i32): bool {
  if (i >= end) return false;
  const c = cpAt(i);
  const l = cpLen;
  const f = unicodeClass(c);
  cpLen = l;
  switch (kind) {
    case R_DSL_LET: return inDslLetters(c);
    case R_DSL_PUN: return inDslPunct(c);
    case R_CJK_A: return inCjkA(c);
    case R_N: return (f & CLS_N) != 0;
    case R_L: return (f & CLS_L) != 0;
    case R_P: return (f & CLS_P) != 0;
    case R_CJK_B: return inCjkB(c);
    case R_FALCON: return isFalconP(c, true);
    case R_DEFAULT: return isFalconP(c, false);
    case R_LM: return (f & (CLS_L | CLS_M)) != 0;
    case R_PS: return (f & (CLS_P | CLS_S)) != 0;
    case R_BLOOM: return isBloomWord(c, f | EXISTS);
    case R_ASCII_LETTER: return isAsciiLetter(c);
  }
  return false;
}

/** End of the run of `kind` members from i (at most `max` of them). */
function run(kind: i32, i: i32, max: i32): i32 {
  let q = i;
  let n = 0;
  while (n < max && member(kind, q)) { q += cpLen; n++; }
  return q;
}

/** `\s?X+` at pos: -1 when no match. */
function optWsRun(kind: i32, pos: i32): i32 {
  if (flagsAt(pos) & CLS_WS) {
    const n0 = pos + cpLen;
    if (member(kind, n0)) return run(kind, n0, 0x7fffffff);
  }
  if (member(kind, pos)) return run(kind, pos, 0x7fffffff);
  return -1;
}

/** `\s*[\r\n]+` (when `newlines`) | `\s+(?!\S)` | `\s+` (when `plain`) at pos, or -1. */
function wsAlt(pos: i32, newlines: bool, plain: bool): i32 {
  let q = pos;
  let count = 0;
  let lastStart = pos;
  let lastRN = -1;
  while (flagsAt(q) & CLS_WS) {
    const c = cpAt(q);
    lastStart = q;
    q += cpLen;
    if (c == 0x0d || c == 0x0a) lastRN = q;
    count++;
  }
  if (count == 0) return -1;
  if (newlines && lastRN >= 0) return lastRN;
  if (q >= end) return q;
  if (count > 1) return lastStart;
  return plain ? q : -1;
}

/** llama.cpp's GPT-2 regex (no trailing `|\s+`). */
function matchGpt2(pos: i32): i32 {
  const b0 = <u32>load<u8>(base + <usize>pos);
  if (b0 == 0x27) {
    const k = contraction(pos, false);
    if (k > 0) return pos + k;
  }
  const c0 = cpAt(pos);
  const n0 = pos + cpLen;
  const p2 = c0 == 0x20 ? n0 : pos;
  const f2 = flagsAt(p2);
  if (f2 & CLS_L) { let q = p2; while (flagsAt(q) & CLS_L) q += cpLen; return q; }
  if (f2 & CLS_N) { let q = p2; while (flagsAt(q) & CLS_N) q += cpLen; return q; }
  if (isOther(f2)) return otherRun(p2);
  return wsAlt(pos, false, false);
}

/** DeepSeek-V3's main regex. */
function matchDsV3(pos: i32): i32 {
  const c0 = cpAt(pos);
  const n0 = pos + cpLen;
  const f0 = unicodeClass(c0) | EXISTS;
  if (isAsciiPunct(c0) && member(R_ASCII_LETTER, n0)) return run(R_ASCII_LETTER, n0, 0x7fffffff);
  if (c0 != 0x0d && c0 != 0x0a && !(f0 & (CLS_L | CLS_P | CLS_S)) && member(R_LM, n0)) return run(R_LM, n0, 0x7fffffff);
  if (f0 & (CLS_L | CLS_M)) return run(R_LM, pos, 0x7fffffff);
  const p2 = c0 == 0x20 ? n0 : pos;
  if (member(R_PS, p2)) return newlinesFrom(run(R_PS, p2, 0x7fffffff), false);
  return wsAlt(pos, true, true);
}

/**
 * GPT-4o / Tekken letters from q (a letter): U = \p{L} except a-z, W = \p{L} except A-Z;
 * `U*W+` with backtracking, else `U+W*`.
 */
function lettersGpt4o(q: i32): i32 {
  let i = q;
  let lastW = -1; // end of the last U-run member that is also in W
  while (true) {
    if (i >= end) break;
    const c = cpAt(i);
    const l = cpLen;
    if (!(unicodeClass(c) & CLS_L) || (c >= 0x61 && c <= 0x7a)) break;
    i += l;
    if (!(c >= 0x41 && c <= 0x5a)) lastW = i;
  }
  // i: end of the U-run. A letter after it is a-z: W+ from there.
  if (i < end && (flagsAt(i) & CLS_L)) {
    while (i < end) {
      const c = cpAt(i);
      const l = cpLen;
      if (!(unicodeClass(c) & CLS_L) || (c >= 0x41 && c <= 0x5a)) break;
      i += l;
    }
    return i;
  }
  if (lastW >= 0) return lastW;
  return i;
}

function matchGpt4o(pos: i32, contractions: bool, maxDigits: i32): i32 {
  const c0 = cpAt(pos);
  const n0 = pos + cpLen;
  const f0 = unicodeClass(c0) | EXISTS;
  if (c0 != 0x0d && c0 != 0x0a && !(f0 & CLS_N)) {
    const q = (f0 & CLS_L) ? pos : n0;
    if (flagsAt(q) & CLS_L) {
      let e2 = lettersGpt4o(q);
      if (contractions && e2 < end) e2 += contraction(e2, true);
      return e2;
    }
  }
  if (f0 & CLS_N) return run(R_N, pos, maxDigits);
  const p2 = c0 == 0x20 ? n0 : pos;
  if (isOther(flagsAt(p2))) return newlinesFrom(otherRun(p2), true);
  return wsAlt(pos, true, true);
}

function matchAt(id: i32, pos: i32): i32 {
  switch (id) {
    case M_CRLF1: {
      const c = load<u8>(base + <usize>pos);
      return c == 0x0d || c == 0x0a ? pos + 1 : -1;
    }
    case M_DSL_LET: return optWsRun(R_DSL_LET, pos);
    case M_DSL_PUN: return optWsRun(R_DSL_PUN, pos);
    case M_WS_END: {
      let q = pos;
      while (flagsAt(q) & CLS_WS) q += cpLen;
      return q > pos && q >= end ? q : -1;
    }
    case M_CJK_A: return member(R_CJK_A, pos) ? run(R_CJK_A, pos, 0x7fffffff) : -1;
    case M_N_PLUS: return member(R_N, pos) ? run(R_N, pos, 0x7fffffff) : -1;
    case M_L_PLUS: return optWsRun(R_L, pos);
    case M_P_PLUS: return optWsRun(R_P, pos);
    case M_N_ONE: return member(R_N, pos) ? run(R_N, pos, 1) : -1;
    case M_N_1_3: return member(R_N, pos) ? run(R_N, pos, 3) : -1;
    case M_CJK_B: return member(R_CJK_B, pos) ? run(R_CJK_B, pos, 0x7fffffff) : -1;
    case M_DSV3: return matchDsV3(pos);
    case M_FALCON_P: return member(R_FALCON, pos) ? run(R_FALCON, pos, 0x7fffffff) : -1;
    case M_GPT2: return matchGpt2(pos);
    case M_D3: {
      if (pos + 3 > end) return -1;
      for (let k = 0; k < 3; k++) {
        const c = load<u8>(base + <usize>(pos + k));
        if (c < 0x30 || c > 0x39) return -1;
      }
      return pos + 3;
    }
    case M_DEFAULT_P: return member(R_DEFAULT, pos) ? run(R_DEFAULT, pos, 0x7fffffff) : -1;
    case M_GPT4O: return matchGpt4o(pos, true, 3);
    case M_TEKKEN: return matchGpt4o(pos, false, 1);
    case M_BLOOM: {
      if (load<u8>(base + <usize>pos) == 0x20 && member(R_BLOOM, pos + 1)) return run(R_BLOOM, pos + 1, 0x7fffffff);
      return member(R_BLOOM, pos) ? run(R_BLOOM, pos, 0x7fffffff) : -1;
    }
  }
  return -1;
}

const stages = new StaticArray<i32>(8);
let nStages = 0;
function nopWord(a: i32, b: i32): void {}
let sink: (a: i32, b: i32) => void = nopWord;

function runStage(k: i32, s: i32, e: i32): void {
  if (k >= nStages) { sink(s, e); return; }
  const id = stages[k];
  let pos = s;
  let gap = s;
  while (pos < e) {
    end = e;
    const m = matchAt(id, pos);
    if (m > pos) {
      if (gap < pos) runStage(k + 1, gap, pos);
      runStage(k + 1, pos, m);
      pos = m;
      gap = m;
    } else {
      end = e;
      pos = nextPos(pos);
    }
  }
  if (gap < e) runStage(k + 1, gap, e);
}

function setStages(a: i32, b: i32, c: i32, d: i32, e2: i32, f: i32): void {
  stages[0] = a; stages[1] = b; stages[2] = c; stages[3] = d; stages[4] = e2; stages[5] = f;
  nStages = f ? 6 : e2 ? 5 : d ? 4 : c ? 3 : b ? 2 : 1;
}

/** Splits [s, e) with the regex list of family FAM_* (see above). */
export function splitFamily(text: usize, s: i32, e: i32, family: i32, word: (a: i32, b: i32) => void): void {
  base = text;
  end = e;
  if (family == FAM_DS_LLM) setStages(M_CRLF1, M_DSL_LET, M_DSL_PUN, M_WS_END, M_CJK_A, M_N_PLUS);
  else if (family == FAM_DS_CODER) setStages(M_CRLF1, M_L_PLUS, M_P_PLUS, M_CJK_A, M_N_ONE, 0);
  else if (family == FAM_DS_V3) setStages(M_N_1_3, M_CJK_B, M_DSV3, 0, 0, 0);
  else if (family == FAM_FALCON) setStages(M_FALCON_P, M_GPT2, M_D3, 0, 0, 0);
  else if (family == FAM_DEFAULT) setStages(M_DEFAULT_P, M_GPT2, M_N_PLUS, M_D3, 0, 0);
  else if (family == FAM_GPT4O) setStages(M_GPT4O, 0, 0, 0, 0, 0);
  else if (family == FAM_TEKKEN) setStages(M_TEKKEN, 0, 0, 0, 0, 0);
  else if (family == FAM_BLOOM) setStages(M_BLOOM, 0, 0, 0, 0, 0);
  else if (family == FAM_VIKING) setStages(M_BLOOM, M_N_ONE, 0, 0, 0, 0);
  else { word(s, e); return; }
  sink = word;
  runStage(0, s, e);
}
