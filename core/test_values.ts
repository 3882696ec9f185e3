/**
 * Deterministic test inputs and the error measure the conformance suites compare with.
 *
 * @module
 */

/** Deterministic values in [-0.5, 0.5) (a 32-bit LCG, so fixtures need no files). */
export function pseudoRandom(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

/** `‖a − b‖∞ / ‖ref‖∞`, with NaN where the arrays disagree on non-finite values. */
export function relativeError(actual: Float32Array, ref: Float32Array): number {
  if (actual.length !== ref.length) {
    throw new RangeError(`Output has ${actual.length} values, expected ${ref.length}`);
  }
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    const a = actual[i]!;
    const b = ref[i]!;
    if (!Number.isFinite(b)) {
      if (!Object.is(a, b) && !(Number.isNaN(a) && Number.isNaN(b))) return NaN;
      continue;
    }
    diff = Math.max(diff, Math.abs(a - b));
    scale = Math.max(scale, Math.abs(b));
  }
  return scale === 0 ? diff : diff / scale;
}
