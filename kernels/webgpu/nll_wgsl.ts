/**
 * WGSL scoring logit rows where they are: for each of a slice's `T` rows of `vocab` logits, the
 * negative log-likelihood of its target token, `(max − x[target]) + ln Σ exp(x − max)` (nats, as
 * `harness/tasks/nll.ts` `tokenNll` computes it), and the row's argmax (the first index on ties,
 * as `argmaxRow`). One workgroup per row: a pass for the maximum and its index, a pass for the sum
 * of exponentials, each ending in a tree reduction. A forward pass that only scores next tokens
 * then reads back two words per row instead of `vocab` floats.
 *
 * Bindings: `p` (`vocab`), the per-slice `Step` (`T`, `pos`), the slice's logits `[T][vocab]`,
 * targets `i32` indexed by absolute position (`-1`: none), and the scores, two words per absolute
 * position (`nll` as f32 bits, NaN where there is no target; the argmax).
 *
 * @module
 */

/** Threads per workgroup (one row per workgroup). */
const GROUP = 256;

/** The scoring kernel; dispatch `(T, 1, 1)` workgroups. */
export const NLL_WGSL = `
struct SP { vocab: u32, a: u32, b: u32, c: u32 }
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: SP;
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<i32>;
@group(0) @binding(4) var<storage, read_write> scores: array<u32>;
var<workgroup> rmax: array<f32, ${GROUP}>;
var<workgroup> ridx: array<u32, ${GROUP}>;
var<workgroup> rsum: array<f32, ${GROUP}>;

@compute @workgroup_size(${GROUP})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let t = wg.x;
  let base = t * p.vocab;
  // Each thread's first maximum (indices ascend, so a strict comparison keeps the first).
  var m = bitcast<f32>(0xff800000u);
  var idx = 0xffffffffu;
  for (var i = lid; i < p.vocab; i += ${GROUP}u) {
    let v = logits[base + i];
    if (v > m) { m = v; idx = i; }
  }
  rmax[lid] = m;
  ridx[lid] = idx;
  workgroupBarrier();
  for (var s = ${GROUP / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let om = rmax[lid + s];
      let oi = ridx[lid + s];
      if (om > rmax[lid] || (om == rmax[lid] && oi < ridx[lid])) {
        rmax[lid] = om;
        ridx[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  let mx = rmax[0];
  var sum = 0.0;
  for (var i = lid; i < p.vocab; i += ${GROUP}u) {
    sum += exp(logits[base + i] - mx);
  }
  rsum[lid] = sum;
  workgroupBarrier();
  for (var s = ${GROUP / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { rsum[lid] += rsum[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let row = st.pos + t;
    let goal = targets[row];
    var nll = 0u;
    if (goal >= 0) {
      nll = bitcast<u32>((mx - logits[base + u32(goal)]) + log(rsum[0]));
    }
    scores[2u * row] = select(nll, 0x7fc00000u, goal < 0);
    // A row of -inf (or NaN) logits has no strict maximum: index 0, as argmaxRow says.
    scores[2u * row + 1u] = select(ridx[0], 0u, ridx[0] == 0xffffffffu);
  }
}
`;
