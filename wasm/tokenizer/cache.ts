// Word cache: text is mostly repeated words, so the ids of each word (up to MAX_KEY bytes) are
// remembered in fixed-size pools. When a pool or the table fills up the whole cache is cleared,
// which keeps memory bounded whatever the input.
import { bytesEqual, hashBytes, emitMany, out, outLen } from "./mem";

export const MAX_KEY: i32 = 64;
const CAP: u32 = 1 << 16; // table slots
const MAX_ENTRIES: i32 = 1 << 15;
const POOL: i32 = 1 << 20; // bytes in each pool
// Slot: u32 hash, i32 key offset (+1; 0 = empty), i32 key len, i32 ids offset, i32 ids count.
const table = heap.alloc(<usize>CAP * 20);
const keys = heap.alloc(<usize>POOL);
const ids = heap.alloc(<usize>POOL);
let keyUsed: i32 = 0;
let idsUsed: i32 = 0; // in bytes
let entries: i32 = 0;
memory.fill(table, 0, <usize>CAP * 20);

export function cacheClear(): void {
  memory.fill(table, 0, <usize>CAP * 20);
  keyUsed = 0;
  idsUsed = 0;
  entries = 0;
}

let slot: usize = 0;
let slotHash: u32 = 0;

/** Emits the cached ids of [p, p+len) and returns true, or remembers the slot and returns false. */
export function cacheEmit(p: usize, len: i32): bool {
  const h = hashBytes(p, len);
  let i = h & (CAP - 1);
  while (true) {
    const s = table + <usize>i * 20;
    const ko = load<i32>(s, 4);
    if (ko == 0) {
      slot = s;
      slotHash = h;
      return false;
    }
    if (load<u32>(s) == h && load<i32>(s, 8) == len && bytesEqual(keys + <usize>(ko - 1), p, len)) {
      emitMany(ids + <usize>load<i32>(s, 12), load<i32>(s, 16));
      return true;
    }
    i = (i + 1) & (CAP - 1);
  }
}

/** Stores ids out[from, outLen) for the word the last cacheEmit missed. */
export function cacheStore(p: usize, len: i32, from: i32): void {
  const n = outLen - from;
  if (entries >= MAX_ENTRIES || keyUsed + len > POOL || idsUsed + (n << 2) > POOL) {
    cacheClear();
    // The remembered slot is gone with the table; find the word's slot again.
    cacheEmit(p, len);
  }
  memory.copy(keys + <usize>keyUsed, p, <usize>len);
  memory.copy(ids + <usize>idsUsed, out.ptr + (<usize>from << 2), <usize>n << 2);
  store<u32>(slot, slotHash);
  store<i32>(slot, keyUsed + 1, 4);
  store<i32>(slot, len, 8);
  store<i32>(slot, idsUsed, 12);
  store<i32>(slot, n, 16);
  keyUsed += len;
  idsUsed += n << 2;
  entries++;
}
