/**
 * Double-float arithmetic for WGSL, which has no float64: a value is the unevaluated sum of two
 * float32 values (`vec2<f32>`, high part first, ~44 significant bits), so that kernels can round
 * as the CPU's float64 ones do (`rmsnorm_dd_wgsl.ts`, `rope_dd_wgsl.ts`). Products are exact
 * sums of products of 12-bit halves (split by masking the mantissa, so that no product rounds);
 * sums are Knuth's error-free two-sums.
 *
 * Those hold only if every operation rounds as written, and WGSL promises less: a compiler may
 * fuse `a * b + c`, and those that treat float arithmetic as real numbers where SPIR-V does not
 * forbid it (Mesa's; WGSL cannot mark an operation exact) rewrite `s − (s − a)` as `a` or factor
 * sums of products, which turns the error terms into 0 or into other values (lavapipe did, for a
 * product by 1.0 put in to hide one). So every intermediate result goes through `keep`, which
 * XORs its bits with zero computed from `ddOne` (1.0 read from a uniform, which no compiler can
 * know): no rewrite or fusion reaches across it, whatever the GPU's compiler. A shader including
 * {@linkcode DOUBLE_FLOAT_WGSL} sets its private `ddOne` to 1.0 read from a uniform before any
 * call; float32 subnormals are assumed kept (values whose squares' low parts underflow, below
 * about 1e-15, may differ where a GPU flushes them).
 *
 * @module
 */

/** The functions `keep`, `twoSum`, `quickTwoSum`, `ddAdd`, `split`, `twoProd`, `ddMulF`, `ddMul`. */
export const DOUBLE_FLOAT_WGSL = `
var<private> ddOne: f32;
// x, opaque to the compiler (see the module notes): its bits XOR 0, a 0 it cannot know.
fn keep(x: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(x) ^ (bitcast<u32>(ddOne) ^ 0x3f800000u));
}
// a + b as (sum, its rounding error), exactly.
fn twoSum(a: f32, b: f32) -> vec2<f32> {
  let s = keep(a + b);
  let bb = keep(s - a);
  return vec2<f32>(s, keep(keep(a - keep(s - bb)) + keep(b - bb)));
}
// The same where |a| >= |b|.
fn quickTwoSum(a: f32, b: f32) -> vec2<f32> {
  let s = keep(a + b);
  return vec2<f32>(s, keep(b - keep(s - a)));
}
fn ddAdd(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
  let s = twoSum(x.x, y.x);
  let t = twoSum(x.y, y.y);
  let u = quickTwoSum(s.x, keep(s.y + t.x));
  return quickTwoSum(u.x, keep(u.y + t.y));
}
// The top 12 significant bits and the rest: products of halves are exact in float32.
fn split(a: f32) -> vec2<f32> {
  let hi = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
  return vec2<f32>(hi, keep(a - hi));
}
// a · b as a double-float, exactly.
fn twoProd(a: f32, b: f32) -> vec2<f32> {
  let sa = split(a);
  let sb = split(b);
  return ddAdd(
    twoSum(keep(sa.x * sb.x), keep(sa.x * sb.y)),
    twoSum(keep(sa.y * sb.x), keep(sa.y * sb.y)),
  );
}
fn ddMulF(a: vec2<f32>, b: f32) -> vec2<f32> {
  let q = twoProd(a.x, b);
  return quickTwoSum(q.x, keep(q.y + keep(a.y * b)));
}
fn ddMul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  let q = twoProd(a.x, b.x);
  return quickTwoSum(q.x, keep(q.y + keep(keep(a.x * b.y) + keep(a.y * b.x))));
}
`;

/** `v` as the double-float `[hi, lo]` (`hi` its nearest float32, `lo` the float32 nearest the rest). */
export function doubleFloat(v: number): [number, number] {
  const hi = Math.fround(v);
  return [hi, Math.fround(v - hi)];
}
