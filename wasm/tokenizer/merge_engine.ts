// The merge loop shared by both algorithms, O(n log n) per word: symbols in a doubly linked
// list over the word's bytes, candidate pairs in a binary min-heap ordered by (priority, left
// index). SentencePiece-BPE (llama.cpp llm_tokenizer_spm) uses priority = -score of the token
// spelled by the pair; byte-level / rank BPE (HF tokenizers, llama.cpp llm_tokenizer_bpe) uses
// priority = rank of the (left id, right id) merge. A popped pair is stale when either side
// changed since it was pushed: symbol lengths only grow, so comparing the summed length catches it.
import { Buf, emit } from "./mem";
import { lookup, tokenScore } from "./vocab";
import { mergeRank, mergeResult } from "./merges";

// Symbols: i32 start (byte offset in word), len, prev, next, id.
const symBuf = new Buf();
let sym: usize = 0;
// Heap entries: f32 priority, i32 left, i32 right, i32 size.
const heapBuf = new Buf();
let hp: usize = 0;
let hn: i32 = 0;

/** ids of the 256 byte tokens (<0xNN> or the raw byte), -1 where missing. */
export const byteTok = heap.alloc(256 << 2);
export let unkId: i32 = -1;
let fuseUnk = false;
export function setUnk(id: i32, fuse: bool): void {
  unkId = id;
  fuseUnk = fuse;
}

// @ts-ignore: decorator
@inline function S(i: i32, field: i32): usize {
  return sym + (<usize>i * 20) + (<usize>field << 2);
}
const START = 0, LEN = 1, PREV = 2, NEXT = 3, ID = 4;

// @ts-ignore: decorator
@inline function H(i: i32): usize {
  return hp + (<usize>i << 4);
}

// @ts-ignore: decorator
@inline function before(a: usize, b: usize): bool {
  const pa = load<f32>(a), pb = load<f32>(b);
  return pa < pb || (pa == pb && load<i32>(a, 4) < load<i32>(b, 4));
}

function heapPush(prio: f32, left: i32, right: i32, size: i32): void {
  let i = hn++;
  store<f32>(H(i), prio);
  store<i32>(H(i), left, 4);
  store<i32>(H(i), right, 8);
  store<i32>(H(i), size, 12);
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!before(H(i), H(parent))) break;
    swap(i, parent);
    i = parent;
  }
}

// @ts-ignore: decorator
@inline function swap(i: i32, j: i32): void {
  const a = H(i), b = H(j);
  const x0 = load<u64>(a), x1 = load<u64>(a, 8);
  store<u64>(a, load<u64>(b));
  store<u64>(a, load<u64>(b, 8), 8);
  store<u64>(b, x0);
  store<u64>(b, x1, 8);
}

/** Moves the top entry to slot `hn` (just past the heap) and restores the heap. */
function heapPop(): void {
  hn--;
  swap(0, hn);
  let i = 0;
  while (true) {
    const l = 2 * i + 1;
    if (l >= hn) break;
    let m = l;
    if (l + 1 < hn && before(H(l + 1), H(l))) m = l + 1;
    if (!before(H(m), H(i))) break;
    swap(i, m);
    i = m;
  }
}

// @ts-ignore: decorator
@inline function utf8Len(b: u32): i32 {
  if (b < 0x80) return 1;
  if ((b >> 5) == 6) return 2;
  if ((b >> 4) == 14) return 3;
  if ((b >> 3) == 30) return 4;
  return 1;
}

// @ts-ignore: decorator
@inline function addSymbol(n: i32, start: i32, len: i32, id: i32): void {
  store<i32>(S(n, START), start);
  store<i32>(S(n, LEN), len);
  store<i32>(S(n, PREV), n - 1);
  store<i32>(S(n, NEXT), n + 1);
  store<i32>(S(n, ID), id);
}

/** Splits [p, p+len) into symbols (UTF-8 chars, or bytes when `bytes`); returns the count. */
function initSymbols(p: usize, len: i32, bytes: bool, withIds: bool): i32 {
  sym = symBuf.ensure(<usize>len * 20);
  hp = heapBuf.ensure(<usize>len * 3 * 16 + 16);
  hn = 0;
  let n = 0;
  let i = 0;
  while (i < len) {
    let l = bytes ? 1 : utf8Len(<u32>load<u8>(p + <usize>i));
    if (i + l > len) l = len - i;
    addSymbol(n, i, l, withIds ? (bytes ? load<i32>(byteTok + (<usize>load<u8>(p + <usize>i) << 2)) : lookup(p + <usize>i, l)) : -1);
    n++;
    i += l;
  }
  store<i32>(S(n - 1, NEXT), -1);
  return n;
}

/**
 * HF BPE merge_word: UTF-8 chars are the symbols; a char outside the vocab becomes one symbol
 * per byte token (byte_fallback, when all its bytes have one) or an unk symbol, consecutive
 * unks fused into one with fuse_unk; with neither it is dropped. Returns the count.
 */
function initCharSymbols(p: usize, len: i32): i32 {
  sym = symBuf.ensure(<usize>len * 20 + 20);
  hp = heapBuf.ensure(<usize>len * 3 * 16 + 16);
  hn = 0;
  let n = 0;
  let i = 0;
  let unkStart = -1; // pending unk symbol [unkStart, i)
  while (i < len) {
    let l = utf8Len(<u32>load<u8>(p + <usize>i));
    if (i + l > len) l = len - i;
    const id = lookup(p + <usize>i, l);
    if (id >= 0) {
      if (unkStart >= 0) { addSymbol(n++, unkStart, i - unkStart, unkId); unkStart = -1; }
      addSymbol(n++, i, l, id);
    } else {
      let all = true;
      for (let k = 0; k < l; k++) {
        if (load<i32>(byteTok + (<usize>load<u8>(p + <usize>(i + k)) << 2)) < 0) { all = false; break; }
      }
      if (all) {
        if (unkStart >= 0) { addSymbol(n++, unkStart, i - unkStart, unkId); unkStart = -1; }
        for (let k = 0; k < l; k++) addSymbol(n++, i + k, 1, load<i32>(byteTok + (<usize>load<u8>(p + <usize>(i + k)) << 2)));
      } else if (unkId >= 0) {
        if (unkStart >= 0 && !fuseUnk) { addSymbol(n++, unkStart, i - unkStart, unkId); unkStart = -1; }
        if (unkStart < 0) unkStart = i;
      }
    }
    i += l;
  }
  if (unkStart >= 0) addSymbol(n++, unkStart, len - unkStart, unkId);
  if (n > 0) store<i32>(S(n - 1, NEXT), -1);
  return n;
}

function spmTryAdd(p: usize, l: i32, r: i32): void {
  if (l < 0 || r < 0) return;
  const size = load<i32>(S(l, LEN)) + load<i32>(S(r, LEN));
  const id = lookup(p + <usize>load<i32>(S(l, START)), size);
  if (id < 0) return;
  heapPush(-tokenScore(id), l, r, size);
}

function bpeTryAdd(l: i32, r: i32): void {
  if (l < 0 || r < 0) return;
  const rank = mergeRank(load<i32>(S(l, ID)), load<i32>(S(r, ID)));
  if (rank < 0) return;
  heapPush(<f32>rank, l, r, load<i32>(S(l, LEN)) + load<i32>(S(r, LEN)));
}

/** Emits one symbol's bytes as byte tokens (or unk where the vocab has none). */
function emitBytes(p: usize, len: i32): void {
  for (let i = 0; i < len; i++) {
    const t = load<i32>(byteTok + (<usize>load<u8>(p + <usize>i) << 2));
    if (t >= 0) emit(t);
    else if (unkId >= 0) emit(unkId);
  }
}

/** SentencePiece BPE of one word (text already escaped with ▁). */
export function spmWord(p: usize, len: i32): void {
  if (len <= 0) return;
  const n = initSymbols(p, len, false, false);
  for (let k = 1; k < n; k++) spmTryAdd(p, k - 1, k);
  while (hn > 0) {
    heapPop();
    const e = H(hn);
    const l = load<i32>(e, 4), r = load<i32>(e, 8);
    const ll = load<i32>(S(l, LEN)), rl = load<i32>(S(r, LEN));
    if (ll == 0 || rl == 0 || ll + rl != load<i32>(e, 12)) continue;
    store<i32>(S(l, LEN), ll + rl);
    store<i32>(S(r, LEN), 0);
    const nx = load<i32>(S(r, NEXT));
    store<i32>(S(l, NEXT), nx);
    if (nx >= 0) store<i32>(S(nx, PREV), l);
    spmTryAdd(p, load<i32>(S(l, PREV)), l);
    spmTryAdd(p, l, nx);
  }
  for (let k = 0; k >= 0; k = load<i32>(S(k, NEXT))) {
    const s = p + <usize>load<i32>(S(k, START));
    const sl = load<i32>(S(k, LEN));
    const id = lookup(s, sl);
    if (id >= 0) emit(id);
    else emitBytes(s, sl);
  }
}

/** Rank-driven BPE of one pre-tokenized word; `bytes`: initial symbols are bytes (byte-level). */
export function bpeWord(p: usize, len: i32, bytes: bool): void {
  if (len <= 0) return;
  const n = bytes ? initSymbols(p, len, true, true) : initCharSymbols(p, len);
  if (n == 0) return;
  for (let k = 1; k < n; k++) bpeTryAdd(k - 1, k);
  while (hn > 0) {
    heapPop();
    const e = H(hn);
    const l = load<i32>(e, 4), r = load<i32>(e, 8);
    const ll = load<i32>(S(l, LEN)), rl = load<i32>(S(r, LEN));
    if (ll == 0 || rl == 0 || ll + rl != load<i32>(e, 12)) continue;
    store<i32>(S(l, ID), mergeResult(<i32>load<f32>(e)));
    store<i32>(S(l, LEN), ll + rl);
    store<i32>(S(r, LEN), 0);
    const nx = load<i32>(S(r, NEXT));
    store<i32>(S(l, NEXT), nx);
    if (nx >= 0) store<i32>(S(nx, PREV), l);
    bpeTryAdd(load<i32>(S(l, PREV)), l);
    bpeTryAdd(l, nx);
  }
  for (let k = 0; k >= 0; k = load<i32>(S(k, NEXT))) {
    const id = load<i32>(S(k, ID));
    if (id >= 0) emit(id);
    else emitBytes(p + <usize>load<i32>(S(k, START)), load<i32>(S(k, LEN)));
  }
}
