/**
 * AQLM's initialisation (the reference's `init_aq_kmeans` with `fit_kmeans`): the rows are divided
 * by their scales (L2 norm + 1e-9), cut into groups of `g` weights, and the codebooks are fitted
 * one after another by k-means on the residual the earlier codebooks leave (residual vector
 * quantization). Each k-means starts from `2^B` distinct data points drawn at random (seeded),
 * assigns every point to its nearest centroid, moves each centroid to the mean of its points (a
 * centroid without points stays), and stops after `maxIter` iterations or when, checked every 10
 * iterations, no centroid moved more than `1e-8 + 1e-6·|value|` (the reference's `allclose`); the
 * codes are then the nearest centroids. With no more points than centroids, every point is a
 * centroid (its own code) and the rest are zero. A padded last group (`aqlm.ts`) is clustered
 * with its zeros.
 *
 * @module
 */
import { aqlmGroups, type AqlmScheme } from "./aqlm.ts";

/** The reference's scale offset: a zero row still divides. */
export const AQLM_SCALE_EPS = 1e-9;

/** An initial AQLM encoding, in float64. */
export interface AqlmInit {
  /** `rows × groups × M`. */
  codes: Int32Array;
  /** `M × 2^B × g`. */
  codebooks: Float64Array;
  /** One per row. */
  scales: Float64Array;
}

/** Index of the centroid nearest to point `p` (the first of equals). */
function nearest(
  data: Float64Array,
  p: number,
  centroids: Float64Array,
  norms: Float64Array,
  k: number,
  d: number,
): number {
  // argmax of x·c − ½‖c‖², as the reference ranks centroids.
  let best = 0;
  let bestScore = -Infinity;
  for (let c = 0; c < k; c++) {
    let dot = 0;
    for (let i = 0; i < d; i++) dot += data[p * d + i]! * centroids[c * d + i]!;
    const score = dot - 0.5 * norms[c]!;
    if (score > bestScore) [best, bestScore] = [c, score];
  }
  return best;
}

function centroidNorms(centroids: Float64Array, k: number, d: number): Float64Array {
  const norms = new Float64Array(k);
  for (let c = 0; c < k; c++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += centroids[c * d + i]! ** 2;
    norms[c] = s;
  }
  return norms;
}

/**
 * K-means of `n` points of dimension `d` into `k` centroids (see the module notes); the codes are
 * the nearest centroids of the result.
 */
export function fitKmeans(
  data: Float64Array,
  n: number,
  d: number,
  k: number,
  maxIter: number,
  random: () => number,
): { centroids: Float64Array; codes: Int32Array } {
  let centroids = new Float64Array(k * d);
  // A partial Fisher–Yates shuffle draws the first min(k, n) points of a random permutation.
  const order = Array.from({ length: n }, (_, i) => i);
  for (let c = 0; c < Math.min(k, n); c++) {
    const j = c + Math.floor(random() * (n - c));
    [order[c], order[j]] = [order[j]!, order[c]!];
    centroids.set(data.subarray(order[c]! * d, (order[c]! + 1) * d), c * d);
  }
  const codes = new Int32Array(n);
  if (n <= k) {
    for (let c = 0; c < n; c++) codes[order[c]!] = c;
    return { centroids, codes };
  }
  const assign = () => {
    const norms = centroidNorms(centroids, k, d);
    for (let p = 0; p < n; p++) codes[p] = nearest(data, p, centroids, norms, k, d);
  };
  for (let it = 0; it < maxIter; it++) {
    assign();
    const sums = new Float64Array(k * d);
    const counts = new Int32Array(k);
    for (let p = 0; p < n; p++) {
      const c = codes[p]!;
      counts[c]!++;
      for (let i = 0; i < d; i++) sums[c * d + i]! += data[p * d + i]!;
    }
    const next = centroids.slice();
    for (let c = 0; c < k; c++) {
      if (counts[c] === 0) continue;
      for (let i = 0; i < d; i++) next[c * d + i] = sums[c * d + i]! / counts[c]!;
    }
    const still = (v: number, i: number) =>
      Math.abs(v - centroids[i]!) <= 1e-8 + 1e-6 * Math.abs(centroids[i]!);
    if (it % 10 === 0 && next.every(still)) break;
    centroids = next;
  }
  assign();
  return { centroids, codes };
}

/** The k-means initialisation of a `rows × cols` matrix `w` in `scheme` (module notes). */
export function aqlmInit(
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  scheme: AqlmScheme,
  maxIter: number,
  random: () => number,
): AqlmInit {
  const { codebooks: M, bits, groupSize: g } = scheme;
  const size = 2 ** bits;
  const groups = aqlmGroups(scheme, cols);
  const width = groups * g;
  const scales = new Float64Array(rows);
  const residue = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += w[r * cols + c]! ** 2;
    scales[r] = Math.sqrt(s) + AQLM_SCALE_EPS;
    for (let c = 0; c < cols; c++) residue[r * width + c] = w[r * cols + c]! / scales[r]!;
  }
  const codes = new Int32Array(rows * groups * M);
  const codebooks = new Float64Array(M * size * g);
  const n = rows * groups;
  for (let m = 0; m < M; m++) {
    const fit = fitKmeans(residue, n, g, size, maxIter, random);
    codebooks.set(fit.centroids, m * size * g);
    for (let p = 0; p < n; p++) {
      const code = fit.codes[p]!;
      codes[p * M + m] = code;
      for (let i = 0; i < g; i++) residue[p * g + i]! -= fit.centroids[code * g + i]!;
    }
  }
  return { codes, codebooks, scales };
}
