/**
 * QuIP's random orthogonal matrices (Chee et al., 2023; Cornell-RelaxML/QuIP `method.py`,
 * `gen_rand_ortho_butterfly*`, `mul_ortho_butterfly`), regenerated from a stored 32-bit seed.
 *
 * A size `n` splits into two factors `p₀ · p₁ = n` (its prime factors in ascending order, the
 * even-indexed ones multiplied into `p₀`, the odd-indexed ones into `p₁`: 64 → 8 · 8,
 * 172 → 86 · 2, 768 → 48 · 16). Viewing a vector as a `p₀ × p₁` array (index `a·p₁ + b`), the
 * matrix is
 *
 * `U = P_out · B₁ · B₀ · P_in`:
 *
 * `P_in` gathers `x[perm_in[i]]`, `B₀` multiplies every column `b` by a random `p₀ × p₀`
 * orthogonal matrix, `B₁` every row `a` by a random `p₁ × p₁` one, `P_out` gathers by `perm_out`.
 * The authors' `pre_proj_extra` picks the variant, kept here as `mode`:
 *
 * - `0`: one matrix per column and per row ("blocking") and random permutations;
 * - `1`: one `p₀ × p₀` matrix `A` and one `p₁ × p₁` matrix `B` for all, random permutations:
 *   `U = P_out (A ⊗ B) P_in`, the Kronecker product of the paper;
 * - `2`: blocking, no permutations.
 *
 * The factor matrices are Haar-distributed on SO(p) (`scipy.stats.special_ortho_group` in the
 * authors' code; here QR of a Gaussian matrix with the signs of R's diagonal, then the first
 * column negated when the determinant is −1); for `p = 2` a rotation by a uniform angle, as the
 * authors draw it; `p = 1` is the identity. Random numbers come from `seededRandom(seed, …)`
 * (`core/random.ts`), drawn in the order factors, then `perm_in`, then `perm_out`.
 *
 * @module
 */
import { seededRandom, shuffledIndices } from "../../core/random.ts";

/** The variants of the authors' `pre_proj_extra` (see the module documentation). */
export type QuipProjMode = 0 | 1 | 2;

/** A random orthogonal matrix of size `n` in its factored form. */
export interface QuipRotation {
  n: number;
  p0: number;
  p1: number;
  /** `count₀ = p₁` (or 1 without blocking) matrices `p₀ × p₀`, row-major, back to back. */
  b0: Float64Array;
  count0: number;
  /** `count₁ = p₀` (or 1 without blocking) matrices `p₁ × p₁`. */
  b1: Float64Array;
  count1: number;
  permIn: Int32Array;
  permOut: Int32Array;
}

/** `n`'s two factors as the authors split it (`butterfly_factors`). */
export function quipFactors(n: number): [number, number] {
  const primes: number[] = [];
  let rest = n;
  for (let p = 2; p * p <= rest; p++) {
    while (rest % p === 0) {
      primes.push(p);
      rest /= p;
    }
  }
  if (rest > 1) primes.push(rest);
  let p0 = 1;
  let p1 = 1;
  primes.forEach((p, i) => i % 2 === 0 ? (p0 *= p) : (p1 *= p));
  return [p0, p1];
}

/** A standard normal number (Box–Muller) from uniform numbers. */
function gaussian(random: () => number): number {
  const u = 1 - random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

/** Sign of the determinant of the `p × p` matrix `a` (Gaussian elimination, partial pivoting). */
function detSign(a: Float64Array, p: number): number {
  const m = Float64Array.from(a);
  let sign = 1;
  for (let k = 0; k < p; k++) {
    let pivot = k;
    for (let i = k + 1; i < p; i++) {
      if (Math.abs(m[i * p + k]!) > Math.abs(m[pivot * p + k]!)) pivot = i;
    }
    if (pivot !== k) {
      sign = -sign;
      for (let j = 0; j < p; j++) {
        [m[k * p + j], m[pivot * p + j]] = [m[pivot * p + j]!, m[k * p + j]!];
      }
    }
    const d = m[k * p + k]!;
    if (d < 0) sign = -sign;
    for (let i = k + 1; i < p; i++) {
      const f = m[i * p + k]! / d;
      for (let j = k; j < p; j++) m[i * p + j]! -= f * m[k * p + j]!;
    }
  }
  return sign;
}

/** A Haar-random `p × p` special orthogonal matrix (row-major) into `out` at `at`. */
function randomSpecialOrthogonal(p: number, random: () => number, out: Float64Array, at: number) {
  if (p === 1) {
    out[at] = 1;
    return;
  }
  if (p === 2) {
    const t = random() * 2 * Math.PI;
    out.set([Math.cos(t), Math.sin(t), -Math.sin(t), Math.cos(t)], at);
    return;
  }
  // Modified Gram–Schmidt on the columns of a Gaussian matrix: Q with R's diagonal positive.
  const g = Float64Array.from({ length: p * p }, () => gaussian(random));
  const q = new Float64Array(p * p);
  for (let j = 0; j < p; j++) {
    for (let i = 0; i < p; i++) q[i * p + j] = g[i * p + j]!;
    for (let k = 0; k < j; k++) {
      let dot = 0;
      for (let i = 0; i < p; i++) dot += q[i * p + k]! * q[i * p + j]!;
      for (let i = 0; i < p; i++) q[i * p + j]! -= dot * q[i * p + k]!;
    }
    let norm = 0;
    for (let i = 0; i < p; i++) norm += q[i * p + j]! * q[i * p + j]!;
    norm = Math.sqrt(norm);
    for (let i = 0; i < p; i++) q[i * p + j]! /= norm;
  }
  if (detSign(q, p) < 0) { for (let i = 0; i < p; i++) q[i * p] = -q[i * p]!; }
  out.set(q, at);
}

/** The rotation of size `n` that `seed` and `mode` stand for. */
export function quipRotation(seed: number, n: number, mode: QuipProjMode): QuipRotation {
  const random = seededRandom(seed, `quip_rotation:${mode}:${n}`);
  const [p0, p1] = quipFactors(n);
  const count0 = mode === 1 ? 1 : p1;
  const count1 = mode === 1 ? 1 : p0;
  const b0 = new Float64Array(count0 * p0 * p0);
  for (let k = 0; k < count0; k++) randomSpecialOrthogonal(p0, random, b0, k * p0 * p0);
  const b1 = new Float64Array(count1 * p1 * p1);
  for (let k = 0; k < count1; k++) randomSpecialOrthogonal(p1, random, b1, k * p1 * p1);
  const identity = () => Int32Array.from({ length: n }, (_, i) => i);
  const permIn = mode === 2 ? identity() : Int32Array.from(shuffledIndices(n, random));
  const permOut = mode === 2 ? identity() : Int32Array.from(shuffledIndices(n, random));
  return { n, p0, p1, b0, count0, b1, count1, permIn, permOut };
}

/**
 * `x ← U·x` (or `Uᵀ·x` with `transpose`) for the length-`n` vector at `x[at …]`, with `tmp` of
 * at least `n` numbers as scratch.
 */
export function applyQuipRotation(
  rot: QuipRotation,
  x: Float64Array,
  at: number,
  transpose: boolean,
  tmp: Float64Array,
): void {
  const { n, p0, p1, b0, b1, count0, count1, permIn, permOut } = rot;
  const s0 = p0 * p0;
  const s1 = p1 * p1;
  // B₀ on the p₀-axis (stride p₁) of column b; B₁ on the p₁-axis (contiguous) of row a.
  const stage0 = (src: Float64Array, so: number, dst: Float64Array, d0: number) => {
    for (let b = 0; b < p1; b++) {
      const m = (count0 === 1 ? 0 : b) * s0;
      for (let i = 0; i < p0; i++) {
        let s = 0;
        for (let k = 0; k < p0; k++) {
          s += (transpose ? b0[m + k * p0 + i]! : b0[m + i * p0 + k]!) * src[so + k * p1 + b]!;
        }
        dst[d0 + i * p1 + b] = s;
      }
    }
  };
  const stage1 = (src: Float64Array, so: number, dst: Float64Array, d0: number) => {
    for (let a = 0; a < p0; a++) {
      const m = (count1 === 1 ? 0 : a) * s1;
      for (let i = 0; i < p1; i++) {
        let s = 0;
        for (let k = 0; k < p1; k++) {
          s += (transpose ? b1[m + k * p1 + i]! : b1[m + i * p1 + k]!) * src[so + a * p1 + k]!;
        }
        dst[d0 + a * p1 + i] = s;
      }
    }
  };
  if (!transpose) {
    for (let i = 0; i < n; i++) tmp[i] = x[at + permIn[i]!]!;
    stage0(tmp, 0, x, at);
    stage1(x, at, tmp, 0);
    for (let i = 0; i < n; i++) x[at + i] = tmp[permOut[i]!]!;
  } else {
    for (let i = 0; i < n; i++) tmp[permOut[i]!] = x[at + i]!;
    stage1(tmp, 0, x, at);
    stage0(x, at, tmp, 0);
    for (let i = 0; i < n; i++) x[at + permIn[i]!] = tmp[i]!;
  }
}

/** The dense `n × n` matrix `U` (row-major) of a rotation, for references and tests. */
export function denseQuipRotation(rot: QuipRotation): Float64Array {
  const { n } = rot;
  const out = new Float64Array(n * n);
  const col = new Float64Array(n);
  const tmp = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    col.fill(0);
    col[j] = 1;
    applyQuipRotation(rot, col, 0, false, tmp);
    for (let i = 0; i < n; i++) out[i * n + j] = col[i]!;
  }
  return out;
}
