/**
 * WGSL that writes a step's key and value rows into a quantized KV cache's float windows
 * (`kv_quant_wgsl.ts`: position `p` at row `p % rows`). The stacked q/k/v path writes the windows
 * itself (`qkv_scatter_wgsl.ts`); this serves blocks compiled step by step (biases, q/k norms,
 * projections in different formats), whose key and value projections write rows by token into a
 * slice buffer, as the query's do, because the matmul kernels store rows at `pos + t`, not modulo
 * a window.
 *
 * @module
 */

/**
 * `keys[(pos + t) % rows] = newKeys[t]`, `values[(pos + t) % rows] = newValues[t]` for the step's
 * `T` rows of `kvDim`. Bindings: uniform (`kvDim`, `rows`), step, new keys, new values, keys,
 * values (`usrrww`); one thread per element of a row pair, `linearGroups(T · kvDim)`.
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
  let dst = ((st.pos + t) % p.rows) * p.kvDim + id % p.kvDim;
  keys[dst] = newKeys[id];
  values[dst] = newValues[id];
}
`;
