/**
 * WGSL of SwiGLU over a stacked gate/up projection (see `stack_rows.ts`): row `t` of the one
 * matmul's output holds `[gate | up]`, and `out[t][i] = silu(gate[i]) · up[i]` — `SWIGLU_WGSL`'s
 * arithmetic, term for term, reading both halves from one buffer so that gate and up are one
 * dispatch.
 *
 * @module
 */

/**
 * `out[t·n + i] = g / (1 + exp(−g)) · u` with `g = gu[t·2n + i]`, `u = gu[t·2n + n + i]`.
 * Bindings: uniform (`n`), step, gu, out (`usrw`); one thread per output element.
 */
export const SWIGLU_PAIR_WGSL = `
struct SP { n: u32, a: u32, b: u32, c: u32 }
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: SP;
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read> gu: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * 256u + gid.x;
  if (i >= st.T * p.n) { return; }
  let t = i / p.n;
  let e = i % p.n;
  let g = gu[t * 2u * p.n + e];
  out[i] = g / (1.0 + exp(-g)) * gu[t * 2u * p.n + p.n + e];
}
`;
