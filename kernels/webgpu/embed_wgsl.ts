/**
 * WGSL of the token-embedding gather of GPU-resident decoding: token ids come from a GPU buffer
 * (written by the host for the first token, by {@linkcode ARGMAX_WGSL}'s dispatch for the next),
 * so no host round trip lies between tokens. The table is split by rows into parts that each fit
 * a storage binding ({@linkcode embedParts}); each part's dispatch copies the rows it holds.
 *
 * @module
 */

/**
 * `x[t·dim + i] = table[(ids[st.a + t] − rowStart)·dim + i]` for the token rows of this part
 * (`rowStart ≤ id < rowStart + rows`); rows of other parts are left alone. Dispatch
 * `linearGroups(T · dim)`.
 */
export const EMBED_WGSL = `
struct EP { dim: u32, rowStart: u32, rows: u32, b: u32 }
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: EP;
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> table: array<f32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let g = gid.x + gid.y * nw.x * 256u;
  if (g >= st.T * p.dim) { return; }
  let t = g / p.dim;
  let i = g % p.dim;
  let r = ids[st.a + t] - p.rowStart;
  if (r < p.rows) { x[g] = table[r * p.dim + i]; }
}
`;

/** Row ranges `[rowStart, rows]` of a `vocab × dim` f32 table, each within `maxBinding` bytes. */
export function embedParts(vocab: number, dim: number, maxBinding: number): [number, number][] {
  const per = Math.floor(maxBinding / (4 * dim));
  if (per < 1) {
    throw new RangeError(`An embedding row of ${dim} floats exceeds the storage binding limit`);
  }
  const parts: [number, number][] = [];
  for (let s = 0; s < vocab; s += per) parts.push([s, Math.min(per, vocab - s)]);
  return parts;
}
