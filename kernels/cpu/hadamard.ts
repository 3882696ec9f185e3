/**
 * The orthogonal Hadamard transform of QuIP#'s incoherence processing, on the CPU. For a size
 * `n = K · 2^k` it is `M = (H_K ⊗ H_{2^k}) / √n`: `H_{2^k}` the Sylvester (natural-order) Hadamard
 * matrix, applied by the fast Walsh–Hadamard butterfly to each of the K contiguous blocks of
 * `2^k` values, and `H_K` a stored ±1 factor (`hadamard_factors.ts`; none for powers of two,
 * K = 1) mixing value `j` of every block — the layout of quip-sharp's `matmul_hadU` (index
 * `k · 2^k + j`). {@linkcode hadamardTransform} applies `M` or `Mᵀ` to every length-`n` row of a
 * buffer in place; the WebGPU kernel (`kernels/webgpu/hadamard_wgsl.ts`) computes the same.
 *
 * @module
 */
import { HAD12, HAD172, HAD28, HAD44 } from "./hadamard_factors.ts";

/** Thrown for a size with no Hadamard factor here. */
export class HadamardSizeError extends RangeError {
  override name = "HadamardSizeError";
}

/** The factorisation `n = k · 2^log2` and the ±1 `k × k` factor (row-major), if `k > 1`. */
export interface HadamardPlan {
  n: number;
  /** Order of the stored factor (1 for powers of two). */
  k: number;
  /** `n / k`, a power of two. */
  pow2: number;
  /** The stored factor as ±1, row-major; empty for k = 1. */
  factor: Int8Array;
}

const STORED: ReadonlyArray<readonly [number, readonly string[]]> = [
  [172, HAD172],
  [12, HAD12],
  [44, HAD44],
  [28, HAD28],
];

const isPow2 = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/** A stored factor's hex rows as ±1 values (bit set → −1, most significant bit first). */
function unpack(k: number, rows: readonly string[]): Int8Array {
  const out = new Int8Array(k * k);
  for (let r = 0; r < k; r++) {
    const hex = rows[r]!;
    for (let c = 0; c < k; c++) {
      const nibble = parseInt(hex[c >> 2]!, 16);
      out[r * k + c] = (nibble >> (3 - (c & 3))) & 1 ? -1 : 1;
    }
  }
  return out;
}

const plans = new Map<number, HadamardPlan>();

/**
 * How size `n` is transformed: the first stored factor K (172, then 12, quip-sharp's order of
 * preference, then 44 and 28) with `n / K` a power of two, or K = 1 for a power of two; a
 * {@linkcode HadamardSizeError} otherwise.
 */
export function hadamardPlan(n: number): HadamardPlan {
  let plan = plans.get(n);
  if (plan !== undefined) return plan;
  const stored = STORED.find(([k]) => n % k === 0 && isPow2(n / k));
  if (stored !== undefined) {
    const [k, rows] = stored;
    plan = { n, k, pow2: n / k, factor: unpack(k, rows) };
  } else if (isPow2(n)) {
    plan = { n, k: 1, pow2: n, factor: new Int8Array(0) };
  } else {
    throw new HadamardSizeError(
      `No Hadamard transform of size ${n}: it must be a power of two, or ` +
        `${STORED.map(([k]) => k).join(", ").replace(/, (\d+)$/, " or $1")} times a power of two`,
    );
  }
  plans.set(n, plan);
  return plan;
}

/** The fast Walsh–Hadamard butterfly (unnormalised, natural order) on `x[at .. at + len)`. */
function butterfly(x: Float32Array | Float64Array, at: number, len: number): void {
  for (let h = 1; h < len; h <<= 1) {
    for (let i = at; i < at + len; i += h << 1) {
      for (let j = i; j < i + h; j++) {
        const a = x[j]!;
        const b = x[j + h]!;
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

/**
 * Replaces every length-`n` row of `x` (`x.length` a multiple of `n`) by `M · row`, or by
 * `Mᵀ · row` with `transpose` (see the module notes); `M` is orthogonal, so one undoes the other.
 */
export function hadamardTransform(
  x: Float32Array | Float64Array,
  n: number,
  transpose = false,
): void {
  const { k, pow2, factor } = hadamardPlan(n);
  if (x.length % n !== 0) {
    throw new HadamardSizeError(
      `A buffer of ${x.length} values is no whole number of rows of ${n}`,
    );
  }
  const scale = 1 / Math.sqrt(n);
  const mixed = new Float64Array(k);
  for (let at = 0; at < x.length; at += n) {
    for (let b = 0; b < k; b++) butterfly(x, at + b * pow2, pow2);
    if (k === 1) {
      for (let i = at; i < at + n; i++) x[i]! *= scale;
      continue;
    }
    for (let j = 0; j < pow2; j++) {
      for (let r = 0; r < k; r++) {
        let s = 0;
        for (let c = 0; c < k; c++) {
          s += (transpose ? factor[c * k + r]! : factor[r * k + c]!) * x[at + c * pow2 + j]!;
        }
        mixed[r] = s;
      }
      for (let r = 0; r < k; r++) x[at + r * pow2 + j] = mixed[r]! * scale;
    }
  }
}
