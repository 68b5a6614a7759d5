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

/** FNV-1a over bytes. */
export function hashBytes(p: usize, n: i32): u32 {
  let h: u32 = 2166136261;
  for (let i = 0; i < n; i++) {
    h = (h ^ <u32>load<u8>(p + <usize>i)) * 16777619;
  }
  return h;
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
