/**
 * WGSL of a module's output minus its target, in place: with `gated` (uniform word 1) SwiGLU's,
 * `gate[i] = silu(gate[i]) · up[i] − target[i]` (float32, SwiGLU as `ops_wgsl.ts`'s), without it
 * `gate[i] = gate[i] − target[i]` (`up` unread), for `i < n` — the error of a module's output
 * against its float value, which AWQ's scale search then sends through the next linear
 * (`gated_loss.ts`).
 *
 * @module
 */

/** Threads per workgroup. */
const WORKGROUP = 256;

/** Most workgroups along one dimension of a dispatch. */
const MAX_GROUPS_X = 65535;

/** Bindings: uniform `{ n, gated }`, `gate` (read-write), `up`, `target`. */
export const GATED_ERROR_SIGNATURE = "uwrr";

/** The shader (see the module notes). */
export const GATED_ERROR_WGSL = `
struct P { n: u32, gated: u32, b: u32, c: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read> want: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * ${WORKGROUP}u + gid.x;
  if (i >= p.n) { return; }
  let g = gate[i];
  if (p.gated != 0u) {
    gate[i] = g / (1.0 + exp(-g)) * up[i] - want[i];
  } else {
    gate[i] = g - want[i];
  }
}
`;

/** Workgroups covering `n` values (rows of at most 65535 groups). */
export function gatedErrorGroups(n: number): [number, number, number] {
  const groups = Math.ceil(n / WORKGROUP);
  const x = Math.min(groups, MAX_GROUPS_X);
  return [Math.max(1, x), Math.max(1, Math.ceil(groups / Math.max(1, x))), 1];
}
