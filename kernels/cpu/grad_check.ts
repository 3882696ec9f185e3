/**
 * Central finite differences for checking gradients in float64: `(f(x + h) − f(x − h)) / 2h`
 * per element, compared with an analytic gradient. Used by the backward pass's tests.
 *
 * @module
 */
import { seededRandom } from "../../core/random.ts";

/** Seeded uniform values in `offset ± scale`. */
export function randomValues(n: number, seed: number, scale = 1, offset = 0): Float64Array {
  const random = seededRandom(seed, "grad_check");
  return Float64Array.from({ length: n }, () => offset + scale * (2 * random() - 1));
}

/** `Σ a · b`: turns an output into a scalar whose gradient w.r.t. the output is `b`. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** The central difference of `f` in element `i` of `x` (restored afterwards). */
export function centralDifference(f: () => number, x: Float64Array, i: number, h = 1e-5): number {
  const keep = x[i]!;
  x[i] = keep + h;
  const up = f();
  x[i] = keep - h;
  const down = f();
  x[i] = keep;
  return (up - down) / (2 * h);
}

/** The worst error of an analytic gradient against central differences. */
export interface GradError {
  /** Largest `|analytic − numeric| / max(|numeric|, floor)` over the elements checked. */
  relative: number;
  /** Elements checked. */
  checked: number;
}

/**
 * Compares `analytic` with the central differences of `f` in `x` at `indices` (all by default).
 * `floor` keeps near-zero elements from dominating the relative error.
 */
export function gradError(
  f: () => number,
  x: Float64Array,
  analytic: ArrayLike<number>,
  indices: Iterable<number> = x.keys(),
  floor = 1e-4,
): GradError {
  let relative = 0;
  let checked = 0;
  for (const i of indices) {
    const numeric = centralDifference(f, x, i);
    const err = Math.abs(analytic[i]! - numeric) / Math.max(Math.abs(numeric), floor);
    relative = Math.max(relative, err);
    checked++;
  }
  return { relative, checked };
}
