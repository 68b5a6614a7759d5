// Tokenizer WASM entry. One instance holds one vocabulary. The host (src/tokenizer/wasm.ts)
// writes the vocab once (alloc + vocabInit/mergesInit/configure), then per call writes UTF-8
// text at inputPtr(len) and calls encode(); ids are read from outPtr()[0 .. count).
import { Buf, emit, out, outLen, outReset } from "./mem";
import { lookup, nTokens, vocabInit as vInit } from "./vocab";
import { mergesInit as mInit } from "./merges";
import { bpeWord, byteTok, setUnk, spmWord } from "./merge_engine";
import { cacheClear, cacheEmit, cacheStore, MAX_KEY } from "./cache";
import { splitDigitsGpt2, splitFamily, splitGpt2, splitLlama3 } from "./pretok";

export const ALGO_SPM: i32 = 0; // SentencePiece BPE, score-driven, UTF-8 char symbols
export const ALGO_BPE_BYTES: i32 = 1; // rank BPE over bytes (byte-level BPE)
export const ALGO_BPE_CHARS: i32 = 2; // rank BPE over UTF-8 chars (byte fallback for the rest)

export const PRE_NONE: i32 = 0;
export const PRE_GPT2: i32 = 1;
export const PRE_LLAMA3: i32 = 2;
export const PRE_QWEN2: i32 = 3;
export const PRE_DIGITS_GPT2: i32 = 4;
/** HF Metaspace split=true: a new word before every ▁ (MergedWithNext). */
export const PRE_METASPACE_SPLIT: i32 = 5;
/** 6..14: the regex-list families of pretok.ts splitFamily (FAM_DS_LLM .. FAM_VIKING). */
export const PRE_FAMILY_FIRST: i32 = 6;
export const PRE_FAMILY_LAST: i32 = 14;

let algo: i32 = ALGO_SPM;
let ignoreMerges = false;
let spmChunkSafe = false;
let escapeSpaces = false;

export function alloc(bytes: i32): usize {
  return heap.alloc(<usize>bytes);
}

export function vocabInit(n: i32, blobPtr: usize, offsPtr: usize, scoresPtr: usize): void {
  vInit(n, blobPtr, offsPtr, scoresPtr);
  cacheClear();
}

export function mergesInit(n: i32, triples: usize): void {
  mInit(n, triples);
  cacheClear();
}

/** ASCII chars no multi-char token contains (u8[128], 1 = isolated), for the host to fill. */
const isolated = heap.alloc(128);
memory.fill(isolated, 0, 128);
export function isolatedPtr(): usize {
  return isolated;
}

/** The 256-entry i32 table of byte-token ids, for the host to fill (-1 = none). */
export function byteTokensPtr(): usize {
  return byteTok;
}

/**
 * algorithm: ALGO_*; unk: unknown-token id or -1; ignore: HF `ignore_merges` (a word that is a
 * token is emitted whole); chunkSafe: no token has ▁ after another char, so each "▁word" may be
 * encoded on its own (identical ids, and cacheable); escape: ' ' becomes ▁ before encoding
 * (always for SPM; HF SentencePiece-style BPE: Replace normalizer / Metaspace); fuseUnk: HF
 * fuse_unk.
 */
export function configure(algorithm: i32, unk: i32, ignore: bool, chunkSafe: bool, escape: bool, fuseUnk: bool): void {
  algo = algorithm;
  setUnk(unk, fuseUnk);
  ignoreMerges = ignore;
  spmChunkSafe = chunkSafe;
  escapeSpaces = escape || algorithm == ALGO_SPM;
  cacheClear();
}

export function vocabSize(): i32 {
  return nTokens;
}

const input = new Buf();
const escaped = new Buf();

export function inputPtr(len: i32): usize {
  return input.ensure(<usize>len + 16);
}

export function outPtr(): usize {
  return out.ptr;
}

let wordBase: usize = 0;

function onWord(a: i32, b: i32): void {
  const p = wordBase + <usize>a;
  const len = b - a;
  if (len <= 0) return;
  if (ignoreMerges) {
    const id = lookup(p, len);
    if (id >= 0) {
      emit(id);
      return;
    }
  }
  const cacheable = len <= MAX_KEY;
  if (cacheable && cacheEmit(p, len)) return;
  const from = outLen;
  if (algo == ALGO_SPM) spmWord(p, len);
  else bpeWord(p, len, algo == ALGO_BPE_BYTES);
  if (cacheable) cacheStore(p, len, from);
}

// @ts-ignore: decorator
@inline function isMeta(p: usize): bool {
  return load<u8>(p) == 0xe2 && load<u8>(p, 1) == 0x96 && load<u8>(p, 2) == 0x81;
}

/**
 * SentencePiece / HF Metaspace: escapes ' ' as ▁ (after an optional ▁ prefix) and encodes
 * [0, len) of the input: with splitAll a word starts at every ▁; with chunkSafe, each run
 * "▁...▁word" is its own unit; else the whole text is one word.
 */
function encodeEscaped(len: i32, addPrefix: bool, splitAll: bool): void {
  const src = input.ptr;
  const dst = escaped.ensure(<usize>len * 3 + 16);
  let n = 0;
  if (addPrefix) {
    store<u8>(dst, 0xe2); store<u8>(dst, 0x96, 1); store<u8>(dst, 0x81, 2);
    n = 3;
  }
  for (let i = 0; i < len; i++) {
    const c = load<u8>(src + <usize>i);
    if (c == 0x20) {
      store<u8>(dst + <usize>n, 0xe2); store<u8>(dst + <usize>n, 0x96, 1); store<u8>(dst + <usize>n, 0x81, 2);
      n += 3;
    } else {
      store<u8>(dst + <usize>n, c);
      n++;
    }
  }
  wordBase = dst;
  // Cut points that cannot change the ids: before a ▁ (Metaspace split: every one; chunkSafe:
  // one after another char), and around an ASCII char that no multi-char token contains (it
  // stays a symbol of its own, so no merge crosses it: newlines in most SPM vocabs).
  const cutMeta = splitAll || spmChunkSafe;
  let start = 0;
  let i = 0;
  while (i < n) {
    const c = load<u8>(dst + <usize>i);
    if (c == 0xe2 && i + 2 < n && isMeta(dst + <usize>i)) {
      if (cutMeta && i > start && (splitAll || !(i >= 3 && isMeta(dst + <usize>i - 3)))) {
        onWord(start, i);
        start = i;
      }
      i += 3;
      continue;
    }
    if (c < 0x80 && load<u8>(isolated + <usize>c) != 0) {
      if (i > start) onWord(start, i);
      onWord(i, i + 1);
      start = i + 1;
    }
    i++;
  }
  if (n > start) onWord(start, n);
}

/** Encodes input[0, len) and returns the number of ids at outPtr(). */
export function encode(len: i32, pre: i32, addPrefix: bool): i32 {
  outReset();
  if (escapeSpaces) {
    encodeEscaped(len, addPrefix, pre == PRE_METASPACE_SPLIT);
    return outLen;
  }
  wordBase = input.ptr;
  if (pre == PRE_GPT2) splitGpt2(input.ptr, 0, len, onWord);
  else if (pre == PRE_LLAMA3) splitLlama3(input.ptr, 0, len, 3, onWord);
  else if (pre == PRE_QWEN2) splitLlama3(input.ptr, 0, len, 1, onWord);
  else if (pre == PRE_DIGITS_GPT2) splitDigitsGpt2(input.ptr, 0, len, onWord);
  else if (pre >= PRE_FAMILY_FIRST && pre <= PRE_FAMILY_LAST) splitFamily(input.ptr, 0, len, pre, onWord);
  else onWord(0, len);
  return outLen;
}

function onPiece(a: i32, b: i32): void {
  if (b > a) emit(b);
}

/**
 * Pre-tokenizes input[0, len) only (no BPE): writes the end byte offset of every piece at
 * outPtr() and returns their number. For tests against the regexes.
 */
export function pretokenize(len: i32, pre: i32): i32 {
  outReset();
  if (pre == PRE_GPT2) splitGpt2(input.ptr, 0, len, onPiece);
  else if (pre == PRE_LLAMA3) splitLlama3(input.ptr, 0, len, 3, onPiece);
  else if (pre == PRE_QWEN2) splitLlama3(input.ptr, 0, len, 1, onPiece);
  else if (pre == PRE_DIGITS_GPT2) splitDigitsGpt2(input.ptr, 0, len, onPiece);
  else if (pre >= PRE_FAMILY_FIRST && pre <= PRE_FAMILY_LAST) splitFamily(input.ptr, 0, len, pre, onPiece);
  else onPiece(0, len);
  return outLen;
}
