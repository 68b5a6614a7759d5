// row_reduce: max and sum over the 64 threads of a workgroup that owns one row (cross_entropy.wgsl,
// distill.wgsl). Every thread must call them (they contain barriers), in uniform control flow; each
// ends with a barrier, so `red` can be reused by the next reduction at once.

var<workgroup> red: array<f32, 64>;

fn reduceMax(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  for (var s = 32u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
  }
  workgroupBarrier();
  let r = red[0];
  workgroupBarrier(); // red is reused by the next reduction
  return r;
}

fn reduceSum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  for (var s = 32u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) { red[lid] += red[lid + s]; }
  }
  workgroupBarrier();
  let r = red[0];
  workgroupBarrier();
  return r;
}
