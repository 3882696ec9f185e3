/**
 * RMSNorm rounded as the CPU's (`kernels/cpu/ops.ts`), for the calibration block on the GPU: the
 * CPU sums the squares, takes `1/√(ss/dim + eps)` and multiplies `w · (inv · x)` in float64 and
 * rounds once to float32; the backend's kernel (`ops_wgsl.ts`) does it all in float32 and comes
 * out a unit in the last place off for many values, which is enough to tip a search's near-tie
 * (AWQ's clip and ratio choices) the other way. WGSL has no float64, so this kernel carries the
 * quantities that need it as double-floats (`double_float_wgsl.ts`); the mean's division and
 * the inverse square root are corrected by two residual steps each (the first makes the float32
 * estimate as good as a correctly rounded one, which WGSL's division and sqrt need not be). Its
 * outputs equal the CPU's but where the exact value lies within about 2⁻⁴⁴ of a float32 rounding
 * boundary.
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

// r + r·(1 − m·r²)/2, one Newton step towards 1/√m, as a double-float.
fn rsqrtStep(m: vec2<f32>, r: f32) -> vec2<f32> {
  let mr = ddMul(m, twoProd(r, r));
  // 1 − mr.x is exact (mr.x is near 1); kept, so that no compiler sums mr.x + mr.y first.
  let e = keep(1.0 - mr.x) - mr.y;
  return quickTwoSum(r, r * e * 0.5);
}

@compute @workgroup_size(256)
fn main(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  ddOne = p.one;
  // Rows past 65535 (head norms: tokens × heads) continue along y; the test is the workgroup's.
  let row = wg.y * nwg.x + wg.x;
  if (row >= st.T) { return; }
  let base = row * p.dim;
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
  // The mean: a float32 quotient corrected by its exact remainder. WGSL lets division be 2.5
  // ulp off (GPUs' reciprocals are), so the quotient is first corrected to float32's nearest;
  // the last correction, a few ulp of the mean, then carries the division's error at ~2⁻⁴⁶.
  let d = f32(p.dim);
  let q0 = n.x / d;
  let rem0 = ddAdd(n, -twoProd(q0, d));
  let q1 = q0 + (rem0.x + rem0.y) / d;
  let rem = ddAdd(n, -twoProd(q1, d));
  let m = ddAdd(quickTwoSum(q1, (rem.x + rem.y) / d), vec2<f32>(p.eps, p.epsLo));
  // 1/√m: float32's estimate, then Newton steps on the residual 1 − m·r². WGSL lets sqrt and
  // division each be ulps off, and the step's error is quadratic in the estimate's: a first
  // step brings the estimate to float32's rounding, whatever the GPU's sqrt.
  let r0 = rsqrtStep(m, 1.0 / sqrt(m.x)).x;
  let inv = rsqrtStep(m, r0);
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
    groups: rmsnormDdGroups,
  };
}

/**
 * Workgroups of the kernel for `T` rows, one a row: along x up to 65,535 (WebGPU's default limit
 * per dimension), the rest along y (the kernel skips the last row's spares).
 */
export function rmsnormDdGroups(T: number): [number, number, number] {
  const x = Math.max(1, Math.min(T, 65535));
  return [x, Math.ceil(T / x), 1];
}
