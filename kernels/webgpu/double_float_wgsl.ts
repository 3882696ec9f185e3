/**
 * Double-float arithmetic for WGSL, which has no float64: a value is the unevaluated sum of two
 * float32 values (`vec2<f32>`, high part first, ~44 significant bits), so that kernels can round
 * as the CPU's float64 ones do (`rmsnorm_dd_wgsl.ts`, `rope_dd_wgsl.ts`). Products are exact
 * sums of products of 12-bit halves (split by masking the mantissa, so that no product rounds
 * and a fused multiply-add changes nothing); sums are Knuth's error-free two-sums. A shader
 * including {@linkcode DOUBLE_FLOAT_WGSL} sets its private `ddOne` to 1.0 read from a uniform
 * before any call.
 *
 * @module
 */

/** The functions `twoSum`, `quickTwoSum`, `ddAdd`, `split`, `twoProd`, `ddMulF`, `ddMul`. */
export const DOUBLE_FLOAT_WGSL = `
var<private> ddOne: f32;
// a + b as (sum, its rounding error), exactly. The sum is multiplied by ddOne, 1.0 from a
// uniform: a compiler that treats float arithmetic as real numbers (Mesa's, where SPIR-V does
// not forbid it) would otherwise simplify the error terms to 0.
fn twoSum(a: f32, b: f32) -> vec2<f32> {
  let s = (a + b) * ddOne;
  let bb = s - a;
  return vec2<f32>(s, (a - (s - bb)) + (b - bb));
}
// The same where |a| >= |b|.
fn quickTwoSum(a: f32, b: f32) -> vec2<f32> {
  let s = (a + b) * ddOne;
  return vec2<f32>(s, b - (s - a));
}
fn ddAdd(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
  let s = twoSum(x.x, y.x);
  let t = twoSum(x.y, y.y);
  let u = quickTwoSum(s.x, s.y + t.x);
  return quickTwoSum(u.x, u.y + t.y);
}
// The top 12 significant bits and the rest: products of halves are exact in float32.
fn split(a: f32) -> vec2<f32> {
  let hi = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
  return vec2<f32>(hi, a - hi);
}
// a · b as a double-float, exactly.
fn twoProd(a: f32, b: f32) -> vec2<f32> {
  let sa = split(a);
  let sb = split(b);
  return ddAdd(twoSum(sa.x * sb.x, sa.x * sb.y), twoSum(sa.y * sb.x, sa.y * sb.y));
}
fn ddMulF(a: vec2<f32>, b: f32) -> vec2<f32> {
  let q = twoProd(a.x, b);
  return quickTwoSum(q.x, q.y + a.y * b);
}
fn ddMul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  let q = twoProd(a.x, b.x);
  return quickTwoSum(q.x, q.y + (a.x * b.y + a.y * b.x));
}
`;

/** `v` as the double-float `[hi, lo]` (`hi` its nearest float32, `lo` the float32 nearest the rest). */
export function doubleFloat(v: number): [number, number] {
  const hi = Math.fround(v);
  return [hi, Math.fround(v - hi)];
}
