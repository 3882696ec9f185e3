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

/**
 * The functions `keep`, `twoSum`, `quickTwoSum`, `ddAdd`, `split`, `twoProd`, `ddMulF`, `ddMul`,
 * and `divRn` / `divFrom`: float32 division rounded as IEEE's (WGSL lets `a / b` be 2.5 ulp off,
 * and NVIDIA's is, which moved FP8 KV-cache scales an ulp from the CPU's on an H100).
 */
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
// a / b rounded to nearest (ties to even) from an estimate up to 8 ulp off, for b > 0 and a normal
// quotient: q moves an ulp at a time while the exact remainder a − q·b lies past the midpoint
// towards the neighbour on its side (half that ulp times b, exact).
fn divFrom(a: f32, b: f32, estimate: f32) -> f32 {
  var q = estimate;
  for (var i = 0; i < 8; i++) {
    if (q == 0.0) { break; }
    let r = ddAdd(vec2<f32>(a, 0.0), -twoProd(q, b));
    let bits = bitcast<u32>(q);
    // Same sign bits: bits + 1 is the next value away from zero, bits − 1 the next towards it.
    let away = (r.x > 0.0) == (q > 0.0);
    let next = bitcast<f32>(select(bits - 1u, bits + 1u, away));
    let half = abs(keep(next - q)) * 0.5 * b;
    let past = ddAdd(select(r, -r, r.x < 0.0), vec2<f32>(-half, 0.0));
    if (!(past.x > 0.0 || (past.x == 0.0 && (bits & 1u) == 1u))) { break; }
    q = next;
  }
  return q;
}
fn divRn(a: f32, b: f32) -> f32 {
  return divFrom(a, b, a / b);
}
`;

/** `v` as the double-float `[hi, lo]` (`hi` its nearest float32, `lo` the float32 nearest the rest). */
export function doubleFloat(v: number): [number, number] {
  const hi = Math.fround(v);
  return [hi, Math.fround(v - hi)];
}
