// Growable scratch buffers on the stub runtime's bump allocator. A buffer that must grow is
// re-allocated at double size (the old block is freed, which the stub reclaims only when it is
// the last one); total waste stays below the final size, so memory is linear in the input.

export class Buf {
  ptr: usize = 0;
  cap: usize = 0; // bytes
  /** Makes room for `bytes` bytes; contents are NOT preserved. */
  ensure(bytes: usize): usize {
    if (bytes > this.cap) {
      let cap = this.cap < 1024 ? <usize>1024 : this.cap;
      while (cap < bytes) cap <<= 1;
      if (this.ptr != 0) heap.free(this.ptr);
      this.ptr = heap.alloc(cap);
      this.cap = cap;
    }
    return this.ptr;
  }
  /** Makes room for `bytes` bytes, keeping the first `keep` bytes. */
  grow(bytes: usize, keep: usize): usize {
    if (bytes > this.cap) {
      let cap = this.cap < 1024 ? <usize>1024 : this.cap;
      while (cap < bytes) cap <<= 1;
      const p = heap.alloc(cap);
      if (this.ptr != 0) {
        memory.copy(p, this.ptr, keep);
        heap.free(this.ptr);
      }
      this.ptr = p;
      this.cap = cap;
    }
    return this.ptr;
  }
}

/** Token ids produced by the last encode call. */
export const out = new Buf();
export let outLen: i32 = 0;

export function outReset(): void {
  outLen = 0;
}

// @ts-ignore: decorator
@inline export function emit(id: i32): void {
  const need = (<usize>outLen + 1) << 2;
  if (need > out.cap) out.grow(need, <usize>outLen << 2);
  store<i32>(out.ptr + (<usize>outLen << 2), id);
  outLen++;
}

/** Appends n ids from src (i32[n]). */
export function emitMany(src: usize, n: i32): void {
  const need = (<usize>(outLen + n)) << 2;
  if (need > out.cap) out.grow(need, <usize>outLen << 2);
  const dst = out.ptr + (<usize>outLen << 2);
  if (n <= 4) {
    for (let k = 0; k < n; k++) store<i32>(dst + (<usize>k << 2), load<i32>(src + (<usize>k << 2)));
  } else {
    memory.copy(dst, src, <usize>n << 2);
  }
  outLen += n;
}

/**
 * Hash of n bytes, 8 at a time. The tail is read as one masked u64 load, so every buffer
 * hashed here keeps at least 7 readable bytes past its end (the input, escape and blob buffers
 * are allocated with that slack).
 */
export function hashBytes(p: usize, n: i32): u32 {
  let h: u64 = <u64>n * 0x9e3779b97f4a7c15;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    h = rotl<u64>(h ^ load<u64>(p + <usize>i), 27) * 0xff51afd7ed558ccd;
  }
  const r = n - i;
  if (r > 0) {
    const v = load<u64>(p + <usize>i) & ((<u64>1 << (<u64>r << 3)) - 1);
    h = rotl<u64>(h ^ v, 27) * 0xff51afd7ed558ccd;
  }
  h ^= h >> 32;
  h *= 0xc4ceb9fe1a85ec53;
  return <u32>(h >> 32);
}

export function bytesEqual(a: usize, b: usize, n: i32): bool {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    if (load<u64>(a + <usize>i) != load<u64>(b + <usize>i)) return false;
  }
  for (; i < n; i++) {
    if (load<u8>(a + <usize>i) != load<u8>(b + <usize>i)) return false;
  }
  return true;
}
