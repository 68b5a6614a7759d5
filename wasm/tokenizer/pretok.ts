// Pre-tokenizers: hand-written matchers equivalent to the regexes of GPT-2, Llama-3 and Qwen2
// (as llama.cpp's unicode.cpp does), driven by the generated Unicode class tables. They walk
// UTF-8 bytes directly and hand each word to `word(start, end)` so nothing is materialised.
import { unicodeClass, CLS_L, CLS_N, CLS_WS } from "./unicode_tables";

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
    if (f2 != 0 && !(f2 & (CLS_WS | CLS_L | CLS_N))) {
      let q = p2;
      while (true) {
        const f = flagsAt(q);
        if (f == 0 || (f & (CLS_WS | CLS_L | CLS_N))) break;
        q += cpLen;
      }
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
    if (f2 != 0 && !(f2 & (CLS_WS | CLS_L | CLS_N))) {
      let q = p2;
      while (true) {
        const f = flagsAt(q);
        if (f == 0 || (f & (CLS_WS | CLS_L | CLS_N))) break;
        q += cpLen;
      }
      while (q < end) {
        const c = load<u8>(base + <usize>q);
        if (c != 0x0d && c != 0x0a) break;
        q++;
      }
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
