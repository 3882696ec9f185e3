/**
 * RoPE rounded as the CPU's (`kernels/cpu/ops.ts`'s `rotate`), for the calibration block on the
 * GPU: the CPU turns each pair by float64 cosines and sines, `x0·c − x1·s` and `x0·s + x1·c` in
 * float64, rounded once to float32; the backend's kernel (`ops_wgsl.ts`) works in float32 and
 * comes out a few units in the last place off. Here the table holds each cosine and sine as a
 * double-float and the products and sums are double-float (`double_float_wgsl.ts`), so outputs
 * equal the CPU's but where the exact value lies within about 2⁻⁴⁴ (relative to the products) of
 * a float32 rounding boundary. Rows of `nHeads × headDim`, row `t` at position `t`.
 *
 * @module
 */
import { type Dispatch, type Kernels, linearGroups } from "./kernels.ts";
import { DOUBLE_FLOAT_WGSL, doubleFloat } from "./double_float_wgsl.ts";

/** Thrown for heads the kernel cannot take. */
export class RopeShapeError extends Error {
  override name = "RopeShapeError";
}

/** RoPE in place over `T` rows (one thread a pair), from a table of double-float (cos, sin). */
export const ROPE_DD_WGSL = `
struct RP { nHeads: u32, headDim: u32, interleaved: u32, one: f32 }
@group(0) @binding(0) var<uniform> p: RP;
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read> table: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;
${DOUBLE_FLOAT_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  ddOne = p.one;
  let id = gid.y * nwg.x * 256u + gid.x;
  let half = p.headDim / 2u;
  if (id >= st.T * p.nHeads * half) { return; }
  let i = id % half;
  let h = (id / half) % p.nHeads;
  let t = id / (half * p.nHeads);
  let base = (t * p.nHeads + h) * p.headDim;
  var a = base + i;
  var b = a + half;
  if (p.interleaved != 0u) {
    a = base + 2u * i;
    b = a + 1u;
  }
  let cs = table[t * half + i];
  let x0 = buf[a];
  let x1 = buf[b];
  let ra = ddAdd(ddMulF(cs.xy, x0), -ddMulF(cs.zw, x1));
  let rb = ddAdd(ddMulF(cs.zw, x0), ddMulF(cs.xy, x1));
  buf[a] = ra.x + ra.y;
  buf[b] = rb.x + rb.y;
}
`;

/**
 * `[position][pair]` (cos hi, cos lo, sin hi, sin lo) of `position · invFreq[pair]`, the angle
 * and its cosine and sine in float64 as the CPU's `ropeAngles`.
 */
export function ropeTableDd(positions: number, invFreq: ArrayLike<number>): Float32Array {
  const half = invFreq.length;
  const table = new Float32Array(positions * half * 4);
  for (let t = 0; t < positions; t++) {
    for (let i = 0; i < half; i++) {
      const angle = t * invFreq[i]!;
      table.set(
        [...doubleFloat(Math.cos(angle)), ...doubleFloat(Math.sin(angle))],
        (t * half + i) * 4,
      );
    }
  }
  return table;
}

/**
 * The dispatch of RoPE in place on `buf`'s rows of `nHeads × headDim` (`T` from the `Step` at
 * the dynamic offset `encodeDispatches` gives), pairs `(2i, 2i+1)` (`interleaved`) or
 * `(i, i + headDim/2)` (`half`), from a {@linkcode ropeTableDd} of at least `T` positions; its
 * uniform owned by `k`.
 */
export async function ropeDdDispatch(
  k: Kernels,
  step: GPUBuffer,
  table: GPUBuffer,
  buf: GPUBuffer,
  o: { nHeads: number; headDim: number; style: "interleaved" | "half" },
): Promise<Dispatch> {
  if (!(o.nHeads > 0 && o.headDim > 0 && o.headDim % 2 === 0)) {
    throw new RopeShapeError(`RoPE needs an even head width, got ${o.nHeads} × ${o.headDim}`);
  }
  const pipeline = await k.pipeline("usrw", ROPE_DD_WGSL);
  const params = [o.nHeads, o.headDim, o.style === "interleaved" ? 1 : 0, 1];
  const bindGroup = k.device.createBindGroup({
    layout: k.layout("usrw"),
    entries: [k.uniform(params, [3]), { buffer: step, size: 16 }, table, buf]
      .map((b, binding) => ({ binding, resource: b instanceof GPUBuffer ? { buffer: b } : b })),
  });
  return {
    label: "rope (double-float)",
    pipeline: () => pipeline,
    bindGroup,
    groups: (T) => linearGroups((T * o.nHeads * o.headDim) / 2),
  };
}
