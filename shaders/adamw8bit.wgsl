// adamw8bit: AdamW (as adamw.wgsl `step`) with 8-bit blockwise optimizer state, bitsandbytes'
// blockwise 8-bit Adam: m and v kept as 8-bit codes with one f32 absmax per block of 256 values.
// Bindings:
//   param: [n] f32 (read_write, updated in place); grad: [n] f32
//   codes: [2 * B * 64] u32 for an arena of B blocks: 8-bit codes packed 4 per word (value e of
//          block b in byte e%4 of word b*64 + e/4, little-endian); the m codes of all B blocks, then
//          the v codes (block b's v codes at word (B + b)*64).
//   absmax: [2 * B] f32: max |m| per block, then max v per block (at B + b).
//   tables: [1024] f32: mapS[256] (signed dynamic map), mapU[256] (unsigned dynamic map),
//          midsS[255] + 1 pad, midsU[255] + 1 pad (f32 midpoints of neighbouring entries).
//   p: Params of lib/adamw_update.wgsl {n, off, count, _pad: u32, lr, beta1, beta2, eps, weightDecay,
//      bc1, bc2, gradScale: f32}; off: this tensor's first block in the arena; count = B.
// Entry point `step`: one workgroup per block of the tensor (block wid.x + wid.y * nwg.x), 64
// threads x 4 consecutive values (one code word each):
//   m_old = mapS[qm] * absmax_m, v_old = mapU[qv] * absmax_v; g = grad*gradScale;
//   m = b1 m_old + (1-b1) g; v = b2 v_old + (1-b2) g²; the param update of adamw.wgsl (adamwUpdate);
//   new absmax: max |m| and max v over the block (values past n count as 0);
//   code = #{ midpoints < x * (1/absmax) } (a value on a midpoint takes the lower code); a block
//   with absmax 0 scales by 0, so its codes are the code of 0.0.
//#include "lib/adamw_update.wgsl"
@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> codes: array<u32>;
@group(0) @binding(3) var<storage, read_write> absmax: array<f32>;
@group(0) @binding(4) var<storage, read> tables: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

const MAP_S = 0u;
const MAP_U = 256u;
const MIDS = 512u;
// Midpoints of both maps (signed at 0, unsigned at 256), read 8 times per quantized value.
var<workgroup> mids: array<f32, 512>;
var<workgroup> red: array<vec2<f32>, 64>;

// Number of the 255 sorted midpoints at mids[base..] strictly below x (branchless binary search).
fn bucket(base: u32, x: f32) -> u32 {
  var c = 0u;
  for (var s = 128u; s > 0u; s >>= 1u) {
    c = select(c, c + s, mids[base + c + s - 1u] < x);
  }
  return c;
}

@compute @workgroup_size(64)
fn step(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = wid.x + wid.y * nwg.x;
  if (b * 256u >= p.n) { return; } // the whole workgroup: uniform
  for (var k = lid; k < 512u; k += 64u) { mids[k] = tables[MIDS + k]; }
  let gb = p.off + b;
  let wm = gb * 64u + lid;
  let wv = (p.count + gb) * 64u + lid;
  // Read before the barriers below; lane 0 overwrites them after.
  let am = absmax[gb];
  let av = absmax[p.count + gb];
  let qm = codes[wm];
  let qv = codes[wv];
  var mk: array<f32, 4>;
  var vk: array<f32, 4>;
  var mx = 0.0;
  var vx = 0.0;
  for (var k = 0u; k < 4u; k++) {
    let i = b * 256u + lid * 4u + k;
    if (i < p.n) {
      let mo = tables[MAP_S + ((qm >> (8u * k)) & 255u)] * am;
      let vo = tables[MAP_U + ((qv >> (8u * k)) & 255u)] * av;
      let r = adamwUpdate(param[i], grad[i], mo, vo);
      param[i] = r.x;
      mk[k] = r.y;
      vk[k] = r.z;
      mx = max(mx, abs(r.y));
      vx = max(vx, r.z);
    }
  }
  red[lid] = vec2(mx, vx);
  for (var s = 32u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
  }
  workgroupBarrier();
  let a = red[0];
  let rm = select(0.0, 1.0 / a.x, a.x > 0.0);
  let rv = select(0.0, 1.0 / a.y, a.y > 0.0);
  var cm = 0u;
  var cv = 0u;
  for (var k = 0u; k < 4u; k++) {
    cm |= bucket(0u, mk[k] * rm) << (8u * k);
    cv |= bucket(256u, vk[k] * rv) << (8u * k);
  }
  codes[wm] = cm;
  codes[wv] = cv;
  if (lid == 0u) {
    absmax[gb] = a.x;
    absmax[p.count + gb] = a.y;
  }
}
