// BPE merge table: (left id, right id) -> rank (its index in the merges list) and merged id,
// in an open-addressing hash keyed by the id pair.
import { Buf } from "./mem";
import { lookup, tokenLen, tokenStart } from "./vocab";

const concat = new Buf();

let mLeft: usize = 0;
let mRight: usize = 0;
let mNew: usize = 0;
let table: usize = 0; // i32 rank+1, 0 = empty
let mask: u32 = 0;

// @ts-ignore: decorator
@inline function pairHash(a: i32, b: i32): u32 {
  let h = (<u64>(<u32>a) << 32) | <u64>(<u32>b);
  h = (h ^ (h >> 33)) * 0xff51afd7ed558ccd;
  h ^= h >> 33;
  return <u32>h;
}

/**
 * triples: i32[n * 3] of (left, right, merged) in rank order. The first of duplicates wins. A
 * merged id of -1 is looked up here from the two tokens' bytes (needs vocabInit first); a merge
 * whose result is not a token, or with a side < 0, is left out.
 */
export function mergesInit(n: i32, triples: usize): void {
  mLeft = heap.alloc(<usize>n << 2);
  mRight = heap.alloc(<usize>n << 2);
  mNew = heap.alloc(<usize>n << 2);
  let cap: u32 = 16;
  while (cap < <u32>n * 2) cap <<= 1;
  mask = cap - 1;
  table = heap.alloc(<usize>cap << 2);
  memory.fill(table, 0, <usize>cap << 2);
  for (let r = 0; r < n; r++) {
    const a = load<i32>(triples + (<usize>(r * 3) << 2));
    const b = load<i32>(triples + (<usize>(r * 3 + 1) << 2));
    let m = load<i32>(triples + (<usize>(r * 3 + 2) << 2));
    if (m < 0 && a >= 0 && b >= 0) {
      const la = tokenLen(a), lb = tokenLen(b);
      const q = concat.ensure(<usize>(la + lb) + 16);
      memory.copy(q, tokenStart(a), <usize>la);
      memory.copy(q + <usize>la, tokenStart(b), <usize>lb);
      m = lookup(q, la + lb);
    }
    store<i32>(mLeft + (<usize>r << 2), a);
    store<i32>(mRight + (<usize>r << 2), b);
    store<i32>(mNew + (<usize>r << 2), m);
    if (m < 0 || a < 0 || b < 0) continue;
    let h = pairHash(a, b) & mask;
    while (true) {
      const e = load<i32>(table + (<usize>h << 2));
      if (e == 0) {
        store<i32>(table + (<usize>h << 2), r + 1);
        break;
      }
      if (load<i32>(mLeft + (<usize>(e - 1) << 2)) == a && load<i32>(mRight + (<usize>(e - 1) << 2)) == b) break;
      h = (h + 1) & mask;
    }
  }
}

/** Rank of merging (a, b), or -1. */
export function mergeRank(a: i32, b: i32): i32 {
  if (table == 0 || a < 0 || b < 0) return -1;
  let h = pairHash(a, b) & mask;
  while (true) {
    const e = load<i32>(table + (<usize>h << 2));
    if (e == 0) return -1;
    const r = e - 1;
    if (load<i32>(mLeft + (<usize>r << 2)) == a && load<i32>(mRight + (<usize>r << 2)) == b) return r;
    h = (h + 1) & mask;
  }
}

// @ts-ignore: decorator
@inline export function mergeResult(rank: i32): i32 {
  return load<i32>(mNew + (<usize>rank << 2));
}
