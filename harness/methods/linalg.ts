/**
 * Small dense linear algebra in float64 for the calibrated methods: transposes, Cholesky factorisation, the
 * inverse from a Cholesky factor (`torch.cholesky_inverse`), and Gram matrices `XᵀX` of captured
 * activations. Matrices are row-major `Float64Array`s of `n × n`.
 *
 * @module
 */
import { dense } from "../../core/model.ts";
import { wasmMatmul } from "../../kernels/cpu/wasm_matmul.ts";
import { gemm, packRows } from "./search_kernels.ts";

/** Thrown when a matrix that must be symmetric positive definite is not. */
export class NotPositiveDefiniteError extends Error {
  override name = "NotPositiveDefiniteError";
}

/** The transpose of a `rows × cols` row-major matrix. */
export function transpose(a: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c]!;
  }
  return t;
}

/** The lower-triangular `L` with `A = L·Lᵀ` (`torch.linalg.cholesky`). */
export function cholesky(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j]!;
    for (let k = 0; k < j; k++) d -= l[j * n + k]! * l[j * n + k]!;
    if (!(d > 0)) {
      throw new NotPositiveDefiniteError(
        `Matrix is not positive definite: pivot ${j} is ${d} (increase the dampening)`,
      );
    }
    const ljj = Math.sqrt(d);
    l[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j]!;
      for (let k = 0; k < j; k++) s -= l[i * n + k]! * l[j * n + k]!;
      l[i * n + j] = s / ljj;
    }
  }
  return l;
}

/** `A⁻¹` from the Cholesky factor `L` of `A` (`torch.cholesky_inverse`): `L⁻ᵀ·L⁻¹`. */
export function choleskyInverse(l: Float64Array, n: number): Float64Array {
  // M = L⁻¹ (lower triangular) by forward substitution column by column, stored transposed
  // (`mt[j·n + k] = M[k][j]`) so that every sum below reads both operands contiguously.
  const mt = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const jb = j * n;
    mt[jb + j] = 1 / l[jb + j]!;
    for (let i = j + 1; i < n; i++) {
      const ib = i * n;
      let s = 0;
      for (let k = j; k < i; k++) s += l[ib + k]! * mt[jb + k]!;
      mt[jb + i] = -s / l[ib + i]!;
    }
  }
  // (MᵀM)[i][j] = Σ_{k ≥ i} M[k][i]·M[k][j] for j ≤ i.
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ib = i * n;
    for (let j = 0; j <= i; j++) {
      const jb = j * n;
      let s = 0;
      for (let k = i; k < n; k++) s += mt[ib + k]! * mt[jb + k]!;
      inv[ib + j] = s;
      inv[jb + i] = s;
    }
  }
  return inv;
}

/** The upper-triangular `U` with `A = Uᵀ·U` (`torch.linalg.cholesky(A, upper=True)`). */
export function upperCholesky(a: Float64Array, n: number): Float64Array {
  const l = cholesky(a, n);
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) u[j * n + i] = l[i * n + j]!;
  }
  return u;
}

/** Tokens per float32 kernel call; partial sums are added in float64. */
const GRAM_CHUNK = 2048;

/** GPTQ's Hessian `H = 2/N · Σ xxᵀ` over the captured inputs `xs` (N = windows). */
export function hessian(xs: Float32Array[], cols: number): Float64Array {
  const h = new Float64Array(cols * cols);
  for (const x of xs) addGram(h, x, cols);
  for (let i = 0; i < h.length; i++) h[i]! *= 2 / xs.length;
  return h;
}

/**
 * Adds `XᵀX` to `gram` (`cols × cols`) for `X` = `x` as `tokens × cols` row-major. Chunks of
 * tokens are multiplied in float32 on the CPU matmul kernel (or, with `kernel: "search"`, on
 * `search_kernels.ts`'s `gemm`: about twice as fast, summing in another order) and summed in
 * float64.
 */
export function addGram(
  gram: Float64Array,
  x: Float32Array,
  cols: number,
  kernel: "cpu" | "search" = "cpu",
): void {
  const tokens = x.length / cols;
  const part = new Float32Array(cols * cols);
  for (let t0 = 0; t0 < tokens; t0 += GRAM_CHUNK) {
    const n = Math.min(GRAM_CHUNK, tokens - t0);
    // Xᵀ of the chunk: `cols` rows of `n` values; (Xᵀ)·(Xᵀ)ᵀ = XᵀX.
    const xt = new Float32Array(cols * n);
    for (let t = 0; t < n; t++) {
      for (let c = 0; c < cols; c++) xt[c * n + t] = x[(t0 + t) * cols + c]!;
    }
    if (kernel === "cpu") wasmMatmul(part, xt, dense(cols, n, xt));
    else gemm(part, xt, packRows(xt, cols, n));
    for (let i = 0; i < part.length; i++) gram[i]! += part[i]!;
  }
}
