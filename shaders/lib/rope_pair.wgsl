// One rope rotation, shared by rope.wgsl and rope_rows.wgsl: pair i of head h of row r at position
// pos, (a, b) = (2i, 2i + 1) in "normal" mode or (i, i + half) in "neox" mode, (c, s) from the
// host-built cos/sin table cs [maxPos, half, 2]; s -> -s when inverse. Needs x and cs (storage f32).
fn rotate_pair(r: u32, h: u32, i: u32, pos: u32, nHeads: u32, D: u32, half: u32, inverse: bool, neox: bool) {
  let t = 2u * (pos * half + i);
  let c = cs[t];
  let s = select(cs[t + 1u], -cs[t + 1u], inverse);
  let o = r * nHeads * D + h * D + select(2u * i, i, neox);
  let o1 = o + select(1u, half, neox);
  let x0 = x[o];
  let x1 = x[o1];
  x[o] = x0 * c - x1 * s;
  x[o1] = x0 * s + x1 * c;
}
