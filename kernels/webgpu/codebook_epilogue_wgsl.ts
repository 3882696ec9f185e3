/**
 * WGSL shared by the codebook formats' kernels (`e8p_wgsl.ts`, `aqlm_wgsl.ts`, `vptq_wgsl.ts`):
 * their uniform block and output store, and the epilogue that finishes VPTQ's product computed in
 * column splits: `out[t][r] (+)= Σ_z partial[z][t][r] + tokenAdd[t]`, over `splits` partial sums,
 * with the norm's bias term as `tokenAdd` (where the matrix has a norm).
 *
 * Bindings: 0 params ({@linkcode CODEBOOK_PARAMS}), 1 `Step` (dynamic offset), 2 partial sums,
 * 3 token terms (f32), 4 out. Dispatch `linearGroups(T · rows)`.
 *
 * @module
 */

/** Uniform block and `Step` of the codebook kernels, with the strided, accumulating store. */
export const CODEBOOK_PARAMS = `
struct CP {
  rows: u32, cols: u32, xStride: u32, outOff: u32,
  outStride: u32, outPosStride: u32, accumulate: u32, splits: u32,
}
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: CP;
@group(0) @binding(1) var<uniform> st: Step;
`;

/** `fn store(t, r, v)`: writes or adds `v` at token row `t`, output `r` (to `out`). */
export const CODEBOOK_STORE = `
fn store(t: u32, r: u32, v: f32) {
  let i = p.outOff + st.pos * p.outPosStride + t * p.outStride + r;
  if (p.accumulate != 0u) { out[i] += v; } else { out[i] = v; }
}
`;

/** The epilogue's options: whether tokens get a term added. */
export interface EpilogueOptions {
  tokenAdd: boolean;
}

/** The cache key of {@linkcode epilogueShader}. */
export function epilogueKey(o: EpilogueOptions): string {
  return `codebook-epilogue:${o.tokenAdd ? "add" : "plain"}`;
}

/** The epilogue shader (see the module notes). */
export function epilogueShader(o: EpilogueOptions): string {
  return `// ${epilogueKey(o)}
${CODEBOOK_PARAMS}
@group(0) @binding(2) var<storage, read> partial: array<f32>;
@group(0) @binding(3) var<storage, read> tokenAdd: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
${CODEBOOK_STORE}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= st.T * p.rows) { return; }
  let t = i / p.rows;
  let r = i % p.rows;
  var v = 0.0;
  for (var z = 0u; z < p.splits; z++) { v += partial[(z * st.T + t) * p.rows + r]; }
${o.tokenAdd ? "  v += tokenAdd[t];\n" : ""}  store(t, r, v);
}
`;
}
