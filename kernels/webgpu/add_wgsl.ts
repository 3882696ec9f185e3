/**
 * The residual add of a block's steps on the GPU: `out = a + b` over `T` rows of `n` values (the
 * `Step` uniform's `T` at binding 1, as `ops_wgsl.ts`'s kernels read it). In float32, as the
 * CPU's add rounds each sum of two float32 values: the same bits.
 *
 * @module
 */
import { type Dispatch, type Kernels, linearGroups } from "./kernels.ts";

/** Thrown for rows the add cannot take. */
export class AddShapeError extends Error {
  override name = "AddShapeError";
}

/** `out[i] = a[i] + b[i]` for `i < T·n`; one thread a value. */
export const ADD_WGSL = `
struct AP { n: u32, a: u32, b: u32, c: u32 }
@group(0) @binding(0) var<uniform> p: AP;
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * 256u + gid.x;
  if (i >= st.T * p.n) { return; }
  out[i] = a[i] + b[i];
}
`;

/**
 * The dispatch of `out = a + b` over rows of `n` (`T` from the `Step` at the dynamic offset
 * `encodeDispatches` gives), its uniform owned by `k`.
 */
export async function addDispatch(
  k: Kernels,
  step: GPUBuffer,
  a: GPUBuffer,
  b: GPUBuffer,
  out: GPUBuffer,
  n: number,
): Promise<Dispatch> {
  if (!(Number.isInteger(n) && n > 0)) throw new AddShapeError(`Rows of ${n} values`);
  const pipeline = await k.pipeline("usrrw", ADD_WGSL);
  const bindGroup = k.device.createBindGroup({
    layout: k.layout("usrrw"),
    entries: [k.uniform([n]), { buffer: step, size: 16 }, a, b, out].map((b, binding) => ({
      binding,
      resource: b instanceof GPUBuffer ? { buffer: b } : b,
    })),
  });
  return {
    label: "add",
    pipeline: () => pipeline,
    bindGroup,
    groups: (T) => linearGroups(T * n),
  };
}
