/**
 * WGSL that writes a step's key and value rows into a quantized KV cache's float windows
 * (`kv_quant_wgsl.ts`: position `p` at row `p % rows`). The step's rows are by token, one buffer
 * all layers share, where the projections (or the stacked q/k/v split, `qkv_scatter_wgsl.ts`) put
 * them and where the step's quantization and attention read them; a step longer than one token
 * copies them into the window after its attention, since they overwrite rows of earlier positions
 * its queries read, and a one-token step before (the decode kernel reads its row from the window;
 * the stacked split writes that row itself). `kv_quant_wgsl_test.ts` runs it between the cache's
 * other dispatches, as the runner does.
 *
 * @module
 */

/**
 * `keys[(pos + t) % rows] = newKeys[t]`, `values[(pos + t) % rows] = newValues[t]` for the step's
 * last `rows` rows of `kvDim` (earlier ones would be overwritten by later ones). Bindings: uniform
 * (`kvDim`, `rows`), step, new keys, new values, keys, values (`usrrww`); one thread per element
 * of a row pair, `linearGroups(T · kvDim)`.
 */
export const KV_WINDOW_WGSL = `
struct WP { kvDim: u32, rows: u32, a: u32, b: u32 }
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: WP;
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read> newKeys: array<f32>;
@group(0) @binding(3) var<storage, read> newValues: array<f32>;
@group(0) @binding(4) var<storage, read_write> keys: array<f32>;
@group(0) @binding(5) var<storage, read_write> values: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = gid.y * nwg.x * 256u + gid.x;
  if (id >= st.T * p.kvDim) { return; }
  let t = id / p.kvDim;
  if (t + p.rows < st.T) { return; }
  let dst = ((st.pos + t) % p.rows) * p.kvDim + id % p.kvDim;
  keys[dst] = newKeys[id];
  values[dst] = newValues[id];
}
`;
