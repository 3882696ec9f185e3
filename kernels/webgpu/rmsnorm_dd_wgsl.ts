/**
 * RMSNorm rounded as the CPU's (`kernels/cpu/ops.ts`), for the calibration block on the GPU: the
 * CPU sums the squares, takes `1/√(ss/dim + eps)` and multiplies `w · (inv · x)` in float64 and
 * rounds once to float32; the backend's kernel (`ops_wgsl.ts`) does it all in float32 and comes
 * out a unit in the last place off for many values, which is enough to tip a search's near-tie
 * (AWQ's clip and ratio choices) the other way. WGSL has no float64, so this kernel carries the
 * quantities that need it as double-floats (`double_float_wgsl.ts`); the mean's division and
 * the inverse square root are corrected by one residual step. Its outputs equal the CPU's but where the exact value lies within about 2⁻⁴⁴ of
 * a float32 rounding boundary.
 *
 * @module
 */
import type { Dispatch, Kernels } from "./kernels.ts";
import { DOUBLE_FLOAT_WGSL, doubleFloat } from "./double_float_wgsl.ts";

/** Thrown for rows the kernel cannot take. */
export class RmsnormShapeError extends Error {
  override name = "RmsnormShapeError";
}

/** `out[t] = w · x[t] / √(mean(x[t]²) + eps)` in double-float; one workgroup per row. */
export const RMSNORM_DD_WGSL = `
struct NP { dim: u32, eps: f32, epsLo: f32, one: f32 }
@group(0) @binding(0) var<uniform> p: NP;
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
var<workgroup> red: array<vec2<f32>, 256>;
${DOUBLE_FLOAT_WGSL}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  ddOne = p.one;
  let base = wg.x * p.dim;
  var ss = vec2<f32>(0.0, 0.0);
  for (var i = lid; i < p.dim; i += 256u) {
    let v = x[base + i];
    ss = ddAdd(ss, twoProd(v, v));
  }
  red[lid] = ss;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = ddAdd(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let n = red[0];
  // The mean: a float32 quotient corrected by its exact remainder.
  let d = f32(p.dim);
  let q1 = n.x / d;
  let rem = ddAdd(n, -twoProd(q1, d));
  let m = ddAdd(quickTwoSum(q1, (rem.x + rem.y) / d), vec2<f32>(p.eps, p.epsLo));
  // 1/√m: float32's estimate, then one Newton step on its residual 1 − m·r².
  let r0 = 1.0 / sqrt(m.x);
  let mr = ddMul(m, twoProd(r0, r0));
  let e = (1.0 - mr.x) - mr.y;
  let inv = quickTwoSum(r0, r0 * e * 0.5);
  for (var i = lid; i < p.dim; i += 256u) {
    let o = ddMulF(ddMulF(inv, x[base + i]), w[i]);
    out[base + i] = o.x + o.y;
  }
}
`;

/**
 * The dispatch of RMSNorm over rows of `dim` from `x` into `out` (`T` rows from the `Step` at
 * the dynamic offset `encodeDispatches` gives), with `eps` as the float64 the CPU adds; its
 * uniform owned by `k`.
 */
export async function rmsnormDdDispatch(
  k: Kernels,
  step: GPUBuffer,
  x: GPUBuffer,
  weight: GPUBuffer,
  out: GPUBuffer,
  dim: number,
  eps: number,
): Promise<Dispatch> {
  if (!(Number.isInteger(dim) && dim > 0)) throw new RmsnormShapeError(`Rows of ${dim} values`);
  const pipeline = await k.pipeline("usrrw", RMSNORM_DD_WGSL);
  const [hi, lo] = doubleFloat(eps);
  const bindGroup = k.device.createBindGroup({
    layout: k.layout("usrrw"),
    entries: [
      k.uniform([dim, hi, lo, 1], [1, 2, 3]),
      { buffer: step, size: 16 },
      x,
      weight,
      out,
    ]
      .map((b, binding) => ({ binding, resource: b instanceof GPUBuffer ? { buffer: b } : b })),
  });
  return {
    label: "rmsnorm (double-float)",
    pipeline: () => pipeline,
    bindGroup,
    groups: (T) => [T, 1, 1],
  };
}
