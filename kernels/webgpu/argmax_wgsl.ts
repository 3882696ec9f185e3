/**
 * WGSL of the greedy pick of GPU-resident decoding: the index of the largest logit of row 0,
 * the first on ties (as `harness/tasks/nll.ts` `argmaxRow`), written into the token-id buffer
 * where the next token's embedding gather reads it (see `embed_wgsl.ts`).
 *
 * @module
 */

/** Logits each thread loads per loop iteration (independent loads in flight together). */
const UNROLL = 16;

/**
 * `ids[st.a + 1] = argmax(logits[0 .. vocab))`, one workgroup of 256 threads: each scans a
 * strided share in increasing index order keeping the first maximum, and a tree reduction
 * prefers the larger value, then the smaller index (so the first maximum wins overall); NaNs are
 * passed over unless at index 0, as in `argmaxRow`.
 * Dispatch `(1, 1, 1)`.
 */
export const ARGMAX_WGSL = `
struct AP { vocab: u32, a: u32, b: u32, c: u32 }
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: AP;
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;
var<workgroup> rv: array<f32, 256>;
var<workgroup> ri: array<u32, 256>;

fn isNan(v: f32) -> bool {
  // A bit test: compilers may assume no NaNs and fold comparisons.
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return !isNan(v) && (v > bv || (v == bv && i < bi));
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  var bv = bitcast<f32>(0xff800000u);
  var bi = 0xffffffffu;
  for (var base = lid; base < p.vocab; base += ${256 * UNROLL}u) {
    var v: array<f32, ${UNROLL}>;
    for (var u = 0u; u < ${UNROLL}u; u++) {
      let i = min(base + u * 256u, p.vocab - 1u);
      v[u] = logits[i];
    }
    for (var u = 0u; u < ${UNROLL}u; u++) {
      let i = base + u * 256u;
      if (i < p.vocab && better(v[u], i, bv, bi)) {
        bv = v[u];
        bi = i;
      }
    }
  }
  rv[lid] = bv;
  ri[lid] = bi;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s && better(rv[lid + s], ri[lid + s], rv[lid], ri[lid])) {
      rv[lid] = rv[lid + s];
      ri[lid] = ri[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    // As argmaxRow: NaNs never win, except a NaN at index 0, which nothing compares above.
    ids[st.a + 1u] = select(ri[0], 0u, ri[0] == 0xffffffffu || isNan(logits[0]));
  }
}
`;
