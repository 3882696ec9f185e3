/**
 * WGSL of a sum of squares in partial sums: workgroup `w` of a dispatch over `n` values writes
 * `Σ x[i]²` over its slice `[w·per, (w+1)·per)` to `partial[base + w]` (each thread sums a strided
 * part of the slice in float32, then the workgroup adds the threads' sums as a tree), so that a
 * large sum comes back as {@linkcode SUM_SQUARES_GROUPS} floats a dispatch for the host to add in
 * float64 (AWQ's scale-search loss, `gated_loss.ts`).
 *
 * @module
 */

/** Threads per workgroup. */
const WORKGROUP = 256;

/** Workgroups (partial sums) per dispatch: slices of a few dozen values per thread at 1.1B. */
export const SUM_SQUARES_GROUPS = 4096;

/** Bindings: uniform `{ n, base, per }`, `x`, `partial` (read-write). */
export const SUM_SQUARES_SIGNATURE = "urw";

/** The shader (see the module notes). */
export const SUM_SQUARES_WGSL = `
struct P { n: u32, base: u32, per: u32, c: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
var<workgroup> sums: array<f32, ${WORKGROUP}>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let start = wid.x * p.per;
  let end = min(p.n, start + p.per);
  var s = 0.0;
  for (var i = start + lid.x; i < end; i += ${WORKGROUP}u) {
    let v = x[i];
    s += v * v;
  }
  sums[lid.x] = s;
  workgroupBarrier();
  for (var half = ${WORKGROUP / 2}u; half > 0u; half >>= 1u) {
    if (lid.x < half) { sums[lid.x] += sums[lid.x + half]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { partial[p.base + wid.x] = sums[0]; }
}
`;

/** The uniform words for `n` values into partials from `base`. */
export function sumSquaresUniform(n: number, base: number): Uint32Array<ArrayBuffer> {
  return Uint32Array.of(n, base, Math.ceil(n / SUM_SQUARES_GROUPS), 0);
}
