/**
 * Weighted k-means (Lloyd's algorithm) over fixed-length vectors, as VPTQ fits its codebooks:
 * random initialisation (k distinct vectors drawn with a seeded generator, as cuML's
 * `init='random'`), each vector weighted in the centroid means and the inertia, stopped after
 * `iterations` rounds or when the inertia improves by less than `tol` of itself. A cluster that
 * loses every vector keeps its centroid. With no more vectors than centroids every vector is its
 * own centroid (the codebook then has `n` entries).
 *
 * @module
 */
import { shuffledIndices } from "../../core/random.ts";

/** Settings of {@linkcode weightedKmeans}. */
export interface KmeansOptions {
  /** Most Lloyd rounds (VPTQ's `kiter`, 100). */
  iterations: number;
  /** Relative inertia change that counts as converged (VPTQ's `ktol`, 1e-5). */
  tol: number;
  /** Uniform numbers in [0, 1): the initial centroids are drawn with it. */
  random: () => number;
}

/** A fitted codebook. */
export interface KmeansResult {
  /** `count × dim` centroids. */
  centroids: Float64Array;
  /** Number of centroids: `min(k, n)`. */
  count: number;
  /** The nearest centroid of each vector. */
  labels: Int32Array;
  /** Weighted squared distance of the vectors to their centroids. */
  inertia: number;
  /** Lloyd rounds run. */
  iterations: number;
}

/** Thrown for k-means settings that cannot work. */
export class KmeansError extends Error {
  override name = "KmeansError";
}

/**
 * Index of the centroid of `centroids` (`count × dim`) nearest to `data[at..at+dim)` in
 * Euclidean distance (the first of equals).
 */
export function nearestCentroid(
  data: Float64Array,
  at: number,
  centroids: Float64Array,
  count: number,
  dim: number,
): number {
  let best = 0;
  let bestD = Infinity;
  for (let c = 0; c < count; c++) {
    let d = 0;
    const o = c * dim;
    for (let j = 0; j < dim && d < bestD; j++) {
      const e = data[at + j]! - centroids[o + j]!;
      d += e * e;
    }
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}

/**
 * k-means of the `n` vectors of `data` (`n × dim`, row-major) into `k` centroids, each vector
 * weighted by `weights[i]` (all 1 when absent).
 */
export function weightedKmeans(
  data: Float64Array,
  n: number,
  dim: number,
  k: number,
  weights: Float64Array | undefined,
  options: KmeansOptions,
): KmeansResult {
  if (!(Number.isInteger(k) && k >= 1) || data.length !== n * dim) {
    throw new KmeansError(`k-means needs k ≥ 1 and n × dim values, got k ${k} for ${n} × ${dim}`);
  }
  const count = Math.min(k, n);
  if (count === n) {
    // Every vector is its own centroid: Lloyd's rounds would not move them.
    return {
      centroids: data.slice(),
      count,
      labels: Int32Array.from({ length: n }, (_, i) => i),
      inertia: 0,
      iterations: 0,
    };
  }
  const centroids = new Float64Array(count * dim);
  const start = shuffledIndices(n, options.random).slice(0, count);
  start.forEach((v, c) => centroids.set(data.subarray(v * dim, (v + 1) * dim), c * dim));
  const labels = new Int32Array(n);
  const sums = new Float64Array(count * dim);
  const mass = new Float64Array(count);
  let previous = Infinity;
  let inertia = 0;
  let iterations = 0;
  while (iterations < options.iterations) {
    iterations++;
    inertia = assign(data, n, dim, centroids, count, weights, labels);
    sums.fill(0);
    mass.fill(0);
    for (let i = 0; i < n; i++) {
      const w = weights ? weights[i]! : 1;
      const c = labels[i]!;
      mass[c]! += w;
      for (let j = 0; j < dim; j++) sums[c * dim + j]! += w * data[i * dim + j]!;
    }
    for (let c = 0; c < count; c++) {
      if (mass[c]! > 0) {
        for (let j = 0; j < dim; j++) centroids[c * dim + j] = sums[c * dim + j]! / mass[c]!;
      }
    }
    if (Math.abs(previous - inertia) <= options.tol * inertia) break;
    previous = inertia;
  }
  // The labels and inertia of the final centroids.
  inertia = assign(data, n, dim, centroids, count, weights, labels);
  return { centroids, count, labels, inertia, iterations };
}

/** Sets each vector's nearest centroid; returns the weighted inertia. */
function assign(
  data: Float64Array,
  n: number,
  dim: number,
  centroids: Float64Array,
  count: number,
  weights: Float64Array | undefined,
  labels: Int32Array,
): number {
  let inertia = 0;
  for (let i = 0; i < n; i++) {
    const c = nearestCentroid(data, i * dim, centroids, count, dim);
    labels[i] = c;
    let d = 0;
    for (let j = 0; j < dim; j++) d += (data[i * dim + j]! - centroids[c * dim + j]!) ** 2;
    inertia += (weights ? weights[i]! : 1) * d;
  }
  return inertia;
}
