/**
 * WGSL for a blocked (right-looking) Cholesky factorisation and lower-triangular inverse of
 * `n × n` row-major float32 matrices, panel by panel of {@linkcode CHOLESKY_BLOCK} columns (what
 * GPTQ's factor of a large Hessian needs on the GPU; `gptq_factor.ts` encodes them). Panel `k0`
 * of `L = chol(A)`, in place on the lower triangle of `A`:
 *
 * 1. {@linkcode diagonalCholeskyShader}: one workgroup factors the diagonal block
 *    `L11 = chol(A11)` in workgroup memory, unblocked;
 * 2. {@linkcode panelSolveShader}: each thread one row `i ≥ k0 + b` of the panel,
 *    `L21 = A21 · L11⁻ᵀ` by forward substitution, written into `A` and, transposed, into `Lᵀ`
 *    (row `k0 + t` of `Lᵀ` is column `k0 + t` of `L`);
 * 3. the trailing update `A22 −= L21 · L21ᵀ`: the `AᵀB` GEMM (`atb_wgsl.ts`, `rows` layout,
 *    `A = B` = the panel's `b` rows of `Lᵀ`, `α = −1`, lower triangle only).
 *
 * `X = L⁻¹` goes by block rows of `L·X = I` from `X = 0` (a new buffer): for panel `k0`,
 * {@linkcode blockSolveShader} solves `L11 · X1 = R1 + I1` (the block row's right-hand side, which
 * earlier panels' updates left in `X`, plus its part of the identity) for every column `j < k0 + b`
 * at once, each thread one column, and copies the solved block row into a `b × n` buffer; the
 * rows below then take `X2 −= L21 · X1` as the same GEMM (`A` = the panel's rows of `Lᵀ`, `B` =
 * that copy; WebGPU does not bind one buffer both read-only and writable in one dispatch).
 *
 * At `n = 5632` and `b = 64` that is 88 panels: 262 dispatches a Cholesky (88 diagonal blocks, 87
 * panel solves, 87 GEMMs), 175 for the inverse (88 block solves, 87 GEMMs), against `n + 1` for
 * each before (one rank-1 update of the whole trailing triangle per column, 5633 dispatches, and
 * `n³/3` element reads and writes from memory where the GEMMs make `n³/(3b)`). Only the lower
 * triangles are written meaningfully: the GEMM's tiles that straddle the diagonal leave sums above
 * it, which no reader looks at.
 *
 * Everything is float32 with WGSL's `sqrt` and division, as PyTorch's reference GPTQ computes on
 * a GPU, not the float64 CPU path. Per-panel parameters (`n`, `k0`) are read at a dynamic uniform
 * offset ({@linkcode CHOLESKY_STEP_STRIDE}), so all panels encode into one compute pass.
 *
 * @module
 */

/** Panel width `b`: the columns factored per panel (the GEMMs' depth). */
export const CHOLESKY_BLOCK = 64;

/** Threads (rows or columns, one each) per workgroup of the panel and block solves. */
export const CHOLESKY_SOLVE_THREADS = 64;

/** Threads of the diagonal block's workgroup. */
const DIAGONAL_THREADS = 256;

/** Byte stride of the per-panel uniforms (the dynamic-offset alignment). */
export const CHOLESKY_STEP_STRIDE = 256;

const B = CHOLESKY_BLOCK;

const HEADER = `struct Step { n: u32, k0: u32 }
@group(0) @binding(0) var<uniform> st: Step;`;

/**
 * WGSL loading the diagonal block at `k0` of the lower triangle of `src` into workgroup array
 * `l` (`b × b`, row-major), padded past `n` with the identity so that the same `b`-wide code runs
 * on a last, narrower block (a padded pivot 1 with zeros beside it changes nothing above it).
 * `count` threads, `lid` the thread's index.
 */
function loadDiagonal(src: string, count: number): string {
  return `  let n = st.n;
  let k0 = st.k0;
  for (var e = lid; e < ${B * B}u; e += ${count}u) {
    let r = e / ${B}u;
    let c = e % ${B}u;
    var v = select(0.0, 1.0, r == c);
    if (k0 + r < n && c <= r) { v = ${src}[(k0 + r) * n + k0 + c]; }
    l[e] = v;
  }
  workgroupBarrier();`;
}

/**
 * The diagonal block of panel `k0`, factored in place on `a` (signature `sw`; dispatch one
 * workgroup). Column by column in workgroup memory: the pivot's square root, the column divided
 * by it, the rank-1 update of the block's trailing triangle. A non-positive pivot gives NaN (the
 * square root of a negative) or an infinity, which the later steps carry to the final factor's
 * diagonal, where the caller checks it.
 */
export function diagonalCholeskyShader(): string {
  return `${HEADER}
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
var<workgroup> l: array<f32, ${B * B}>;

@compute @workgroup_size(${DIAGONAL_THREADS})
fn main(@builtin(local_invocation_index) lid: u32) {
${loadDiagonal("a", DIAGONAL_THREADS)}
  for (var k = 0u; k < ${B}u; k++) {
    let d = sqrt(l[k * ${B}u + k]);
    workgroupBarrier();
    if (lid >= k && lid < ${B}u) {
      let at = lid * ${B}u + k;
      l[at] = select(l[at] / d, d, lid == k);
    }
    workgroupBarrier();
    for (var e = lid; e < ${B * B}u; e += ${DIAGONAL_THREADS}u) {
      let r = e / ${B}u;
      let c = e % ${B}u;
      if (k < c && c <= r) { l[e] -= l[r * ${B}u + k] * l[c * ${B}u + k]; }
    }
    workgroupBarrier();
  }
  for (var e = lid; e < ${B * B}u; e += ${DIAGONAL_THREADS}u) {
    let r = e / ${B}u;
    let c = e % ${B}u;
    if (k0 + r < n && c <= r) { a[(k0 + r) * n + k0 + c] = l[e]; }
  }
}
`;
}

/**
 * Forward substitution `y ← L11⁻¹ · y` of the thread's `b` values in private array `y` against
 * `l`, left-looking: each value less the dot product of those solved before it with its row of
 * `L11`, divided by its pivot. Loops, not unrolled code: lavapipe's LLVM took over a minute to
 * compile a fully unrolled solve (2 080 statements) from a cold shader cache.
 */
const FORWARD_SUBSTITUTION = `  for (var r = 0u; r < ${B}u; r++) {
    var s = y[r];
    for (var t = 0u; t < r; t++) { s -= y[t] * l[r * ${B}u + t]; }
    y[r] = s / l[r * ${B}u + r];
  }`;

/**
 * Panel `k0`'s rows below its diagonal block, `L21 = A21 · L11⁻ᵀ` (signature `sww`: `a`, `lt`;
 * dispatch `ceil((n − k0 − b) / 64)` workgroups, only when `k0 + b < n`): row `i` of the panel is
 * the solution `y` of `L11 · y = A[i][k0 … k0 + b)ᵀ`, written back into `a` and as column `i` of
 * rows `k0 … k0 + b` of `lt` (`n × n`, `Lᵀ`), which the trailing GEMM reads.
 */
export function panelSolveShader(): string {
  return `${HEADER}
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> lt: array<f32>;
var<workgroup> l: array<f32, ${B * B}>;

@compute @workgroup_size(${CHOLESKY_SOLVE_THREADS})
fn main(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wg: vec3<u32>,
) {
${loadDiagonal("a", CHOLESKY_SOLVE_THREADS)}
  let i = k0 + ${B}u + wg.x * ${CHOLESKY_SOLVE_THREADS}u + lid;
  if (i >= n) { return; }
  let row = i * n + k0;
  var y: array<f32, ${B}>;
  for (var t = 0u; t < ${B}u; t++) { y[t] = a[row + t]; }
${FORWARD_SUBSTITUTION}
  for (var t = 0u; t < ${B}u; t++) {
    a[row + t] = y[t];
    lt[(k0 + t) * n + i] = y[t];
  }
}
`;
}

/**
 * Block row `k0` of `X = L⁻¹` (signature `srww`: `a` holding `L`, `x`, `r`; dispatch
 * `ceil((k0 + w) / 64)` workgroups, `w = min(b, n − k0)`): each thread one column `j < k0 + w`,
 * `X[k0 + t][j] ← (L11⁻¹ · (X1 + I1))[t]`, also written to row `t` of `r` (`b × n`) for the
 * GEMM that updates the rows below. Above the block's diagonal the identity's zeros solve to
 * exact zeros, so `X` stays lower triangular; past `n` the padded `y` (zeros, never stored)
 * solves against the identity padding and leaves the others as they are.
 */
export function blockSolveShader(): string {
  return `${HEADER}
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> r: array<f32>;
var<workgroup> l: array<f32, ${B * B}>;

@compute @workgroup_size(${CHOLESKY_SOLVE_THREADS})
fn main(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wg: vec3<u32>,
) {
${loadDiagonal("a", CHOLESKY_SOLVE_THREADS)}
  let j = wg.x * ${CHOLESKY_SOLVE_THREADS}u + lid;
  let rows = min(n - k0, ${B}u);
  if (j >= k0 + rows) { return; }
  var y: array<f32, ${B}>;
  for (var t = 0u; t < rows; t++) {
    y[t] = x[(k0 + t) * n + j] + select(0.0, 1.0, j == k0 + t);
  }
${FORWARD_SUBSTITUTION}
  for (var t = 0u; t < rows; t++) {
    x[(k0 + t) * n + j] = y[t];
    r[t * n + j] = y[t];
  }
}
`;
}
