// lowbias32 (Chris Wellons' integer hash): full avalanche, cheap, identical in TS with Math.imul
// (src/kernels/hash.ts). Counter-based randomness: dropout masks and GPU sampling.
fn lowbias32(v: u32) -> u32 {
  var h = v;
  h ^= h >> 16u; h *= 0x7feb352du;
  h ^= h >> 15u; h *= 0x846ca68bu;
  h ^= h >> 16u;
  return h;
}
