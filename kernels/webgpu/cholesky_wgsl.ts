/**
 * WGSL for a Cholesky factorisation and a lower-triangular inverse of `n × n` row-major float32
 * matrices, one column per dispatch (what GPTQ's factor of a large Hessian needs on the GPU):
 *
 * - {@linkcode schurShader}, step `k`: `A[i][j] −= A[i][k]·A[j][k] / A[k][k]` for
 *   `k < j ≤ i < n` — the right-looking update of the lower triangle. Column `k` is left
 *   unscaled (no dispatch reads a value another one of the same step writes); after the last
 *   step {@linkcode finishShader} (`chol`) divides each column by the square root of its pivot,
 *   taken from the diagonal that {@linkcode diagonalShader} saved, and zeroes the upper triangle.
 * - {@linkcode trinvShader}, step `k`: `X[i][j] −= L[i][k]·X[k][j] / L[k][k]` for `j ≤ k < i`,
 *   from `X = I` ({@linkcode finishShader} `identity`): forward substitution of all columns of
 *   `L·X = I` at once; {@linkcode finishShader} (`trinv`) then divides row `i` by `L[i][i]`.
 *
 * Each update reads and writes the trailing triangle once, so a step is bound by memory
 * bandwidth; the `n` steps are encoded in one compute pass, the step's `k` at a dynamic uniform
 * offset. The float32 arithmetic follows PyTorch's reference GPTQ on a GPU, not the float64 CPU
 * path.
 *
 * @module
 */

/** Threads per side of a 2-D workgroup. */
export const CHOLESKY_TILE = 16;

/** Byte stride of the per-step uniforms (the dynamic-offset alignment). */
export const CHOLESKY_STEP_STRIDE = 256;

const HEADER = `struct Step { n: u32, k: u32 }
@group(0) @binding(0) var<uniform> st: Step;`;

/**
 * Step `k` of the factorisation, in place on `a` (signature `sw`). Dispatch
 * `(ceil(m/16), ceil(m/16))` with `m = n − k − 1`; workgroups wholly above the diagonal return.
 */
export function schurShader(): string {
  return `${HEADER}
@group(0) @binding(1) var<storage, read_write> a: array<f32>;

@compute @workgroup_size(${CHOLESKY_TILE}, ${CHOLESKY_TILE})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
  if (wg.x > wg.y) { return; }
  let n = st.n;
  let k = st.k;
  let i = k + 1u + g.y;
  let j = k + 1u + g.x;
  if (i >= n || j > i) { return; }
  a[i * n + j] -= a[i * n + k] * a[j * n + k] / a[k * n + k];
}
`;
}

/**
 * Step `k` of the inverse `X = L⁻¹` (signature `srw`: `L`, `X`). Dispatch
 * `(ceil((k + 1)/16), ceil(m/16))` with `m = n − k − 1`.
 */
export function trinvShader(): string {
  return `${HEADER}
@group(0) @binding(1) var<storage, read> l: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(${CHOLESKY_TILE}, ${CHOLESKY_TILE})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let n = st.n;
  let k = st.k;
  let i = k + 1u + g.y;
  let j = g.x;
  if (i >= n || j > k) { return; }
  x[i * n + j] -= l[i * n + k] * x[k * n + j] / l[k * n + k];
}
`;
}

/** Copies the diagonal of `a` into `d` (signature `srw`: `a`, `d`); `n` threads. */
export function diagonalShader(): string {
  return `${HEADER}
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> d: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x;
  if (i < st.n) { d[i] = a[i * st.n + i]; }
}
`;
}

/** What {@linkcode finishShader} writes over the whole matrix. */
export type FinishMode = "chol" | "trinv" | "identity";

/**
 * One pass over every element of `m` (signature `srw`: `v`, `m`; dispatch
 * `(ceil(n/16), ceil(n/16))`): `chol` makes `L` from the updated lower triangle with `v` the
 * saved pivots; `trinv` divides row `i` by `v[i·n + i]` (`v` = `L`); `identity` writes `I`.
 * Each zeroes the upper triangle.
 */
export function finishShader(mode: FinishMode): string {
  const lower = {
    chol: "m[at] / sqrt(v[j])",
    trinv: "m[at] / v[i * n + i]",
    identity: "select(0.0, 1.0, i == j)",
  }[mode];
  return `${HEADER}
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;

@compute @workgroup_size(${CHOLESKY_TILE}, ${CHOLESKY_TILE})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let n = st.n;
  let i = g.y;
  let j = g.x;
  if (i >= n || j >= n) { return; }
  let at = i * n + j;
  m[at] = select(0.0, ${lower}, j <= i);
}
`;
}
