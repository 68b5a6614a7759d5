// Token strings (as raw bytes: byte-level BPE vocabs are un-mapped by the host) in one blob
// with an offsets table, and an open-addressing hash from bytes to the lowest id with them.
import { bytesEqual, hashBytes } from "./mem";

export let nTokens: i32 = 0;
let blob: usize = 0;
let offs: usize = 0; // i32[nTokens + 1]
export let scores: usize = 0; // f32[nTokens]
let table: usize = 0; // i32 id+1, 0 = empty
let mask: u32 = 0;

// @ts-ignore: decorator
@inline export function tokenStart(id: i32): usize {
  return blob + <usize>load<i32>(offs + (<usize>id << 2));
}
// @ts-ignore: decorator
@inline export function tokenLen(id: i32): i32 {
  return load<i32>(offs + (<usize>(id + 1) << 2)) - load<i32>(offs + (<usize>id << 2));
}
// @ts-ignore: decorator
@inline export function tokenScore(id: i32): f32 {
  return load<f32>(scores + (<usize>id << 2));
}

export function vocabInit(n: i32, blobPtr: usize, offsPtr: usize, scoresPtr: usize): void {
  nTokens = n;
  blob = blobPtr;
  offs = offsPtr;
  scores = scoresPtr;
  let cap: u32 = 16;
  while (cap < <u32>n * 2) cap <<= 1;
  mask = cap - 1;
  table = heap.alloc(<usize>cap << 2);
  memory.fill(table, 0, <usize>cap << 2);
  for (let id = 0; id < n; id++) {
    const p = tokenStart(id);
    const len = tokenLen(id);
    let h = hashBytes(p, len) & mask;
    while (true) {
      const e = load<i32>(table + (<usize>h << 2));
      if (e == 0) {
        store<i32>(table + (<usize>h << 2), id + 1);
        break;
      }
      const o = e - 1;
      if (tokenLen(o) == len && bytesEqual(tokenStart(o), p, len)) break; // keep the lowest id
      h = (h + 1) & mask;
    }
  }
}

/** Id of the token whose bytes are [p, p+len), or -1. */
export function lookup(p: usize, len: i32): i32 {
  let h = hashBytes(p, len) & mask;
  while (true) {
    const e = load<i32>(table + (<usize>h << 2));
    if (e == 0) return -1;
    const o = e - 1;
    if (tokenLen(o) == len && bytesEqual(tokenStart(o), p, len)) return o;
    h = (h + 1) & mask;
  }
}
