/**
 * Paired statistics for `compare`: a seeded paired bootstrap for (weighted) means, and McNemar's
 * exact test with a conditional Clopper–Pearson interval for paired 0/1 outcomes.
 *
 * Both give the change `head − base` with an interval at the requested confidence; a change is
 * significant when its interval excludes zero. For McNemar's test that is exactly the condition
 * p < 1 − confidence (see {@linkcode mcnemarExact}).
 *
 * @module
 */

/** A change with its interval. */
export interface Interval {
  /** `head − base` on all pairs. */
  estimate: number;
  low: number;
  high: number;
}

/** Thrown for inputs the statistics cannot use (lengths differ, no pairs, bad options). */
export class StatsError extends Error {
  override name = "StatsError";
}

/**
 * Mulberry32, a small 32-bit generator: deterministic for a seed, uniform in [0, 1). Bootstrap
 * resampling needs reproducibility, not cryptographic quality.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A 32-bit seed for one comparison: FNV-1a of the run seed and a key (e.g. the row's identity), so
 * each row's resamples do not depend on which other rows are compared or in what order.
 */
export function seedFor(seed: number, key: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(`${seed}\u0000${key}`)) {
    h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  }
  return h;
}

/** Σ wᵢxᵢ / Σ wᵢ (weights default to 1). */
export function weightedMean(values: readonly number[], weights?: readonly number[]): number {
  let sum = 0;
  let total = 0;
  values.forEach((v, i) => {
    const w = weights ? weights[i]! : 1;
    sum += w * v;
    total += w;
  });
  return sum / total;
}

/** The p-quantile of ascending `sorted` values, interpolating linearly (Hyndman–Fan type 7). */
export function quantile(sorted: readonly number[], p: number): number {
  const h = (sorted.length - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

/** Options of {@linkcode pairedBootstrap}. */
export interface BootstrapOptions {
  /** Weights of each side's values (e.g. scored tokens per window); default 1. */
  baseWeights?: readonly number[];
  headWeights?: readonly number[];
  resamples: number;
  /** e.g. 0.95. */
  confidence: number;
  seed: number;
}

/**
 * Paired bootstrap of the change in a weighted mean: pairs (baseᵢ, headᵢ) are drawn with
 * replacement, `resamples` times, and each time the change `mean(head) − mean(base)` is computed
 * over the drawn pairs (each side with its own weights, so a ratio of sums as a token-weighted NLL
 * is). The interval is the percentile interval of those changes. Drawing whole pairs keeps the
 * correlation between the two runs on the same window or document, which is what makes the
 * comparison sharp.
 *
 * @throws {StatsError} when the sides have different lengths, no pairs, or bad options.
 */
export function pairedBootstrap(
  base: readonly number[],
  head: readonly number[],
  options: BootstrapOptions,
): Interval {
  const n = base.length;
  const { baseWeights: wb, headWeights: wh, resamples, confidence } = options;
  if (head.length !== n || (wb && wb.length !== n) || (wh && wh.length !== n)) {
    throw new StatsError(`Paired samples differ in length (base ${n}, head ${head.length})`);
  }
  if (n === 0) throw new StatsError("No paired samples");
  checkOptions(resamples, confidence);
  const estimate = weightedMean(head, wh) - weightedMean(base, wb);
  const random = mulberry32(options.seed);
  const deltas = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let sb = 0;
    let tb = 0;
    let sh = 0;
    let th = 0;
    for (let k = 0; k < n; k++) {
      const i = Math.floor(random() * n);
      const bw = wb ? wb[i]! : 1;
      const hw = wh ? wh[i]! : 1;
      sb += bw * base[i]!;
      tb += bw;
      sh += hw * head[i]!;
      th += hw;
    }
    deltas[r] = sh / th - sb / tb;
  }
  deltas.sort();
  const sorted = Array.from(deltas);
  const tail = (1 - confidence) / 2;
  return { estimate, low: quantile(sorted, tail), high: quantile(sorted, 1 - tail) };
}

function checkOptions(resamples: number, confidence: number): void {
  if (!(Number.isInteger(resamples) && resamples >= 100)) {
    throw new StatsError(`Resamples must be an integer ≥ 100, got ${resamples}`);
  }
  if (!(confidence > 0 && confidence < 1)) {
    throw new StatsError(`Confidence must be between 0 and 1, got ${confidence}`);
  }
}

/** The result of {@linkcode mcnemarExact}. */
export interface McNemar extends Interval {
  /** Two-sided exact p-value. */
  p_value: number;
  /** Pairs right in base and wrong in head. */
  base_only: number;
  /** Pairs wrong in base and right in head. */
  head_only: number;
}

/**
 * McNemar's exact test for paired 0/1 outcomes (1 = correct). Only discordant pairs carry
 * information: with `b` pairs right only in base and `c` right only in head, under no change
 * c ~ Binomial(b + c, ½); the two-sided p-value doubles the smaller tail (capped at 1).
 *
 * The change is the difference in accuracy `(c − b) / n` over all n pairs. Its interval is
 * conditional on the number of discordant pairs m = b + c: the Clopper–Pearson interval
 * [πL, πU] for π = c / m maps to `(m / n)(2π − 1)`. The interval excludes zero exactly when
 * p < 1 − confidence, because both compare the same binomial tail with (1 − confidence) / 2.
 *
 * @throws {StatsError} when the sides differ in length, are empty or hold values other than 0 and 1.
 */
export function mcnemarExact(
  base: readonly number[],
  head: readonly number[],
  confidence: number,
): McNemar {
  const n = base.length;
  if (head.length !== n) {
    throw new StatsError(`Paired samples differ in length (base ${n}, head ${head.length})`);
  }
  if (n === 0) throw new StatsError("No paired samples");
  let b = 0;
  let c = 0;
  for (let i = 0; i < n; i++) {
    const x = base[i]!;
    const y = head[i]!;
    if ((x !== 0 && x !== 1) || (y !== 0 && y !== 1)) {
      throw new StatsError(`McNemar's test needs 0/1 outcomes; pair ${i} is (${x}, ${y})`);
    }
    if (x === 1 && y === 0) b++;
    if (x === 0 && y === 1) c++;
  }
  const m = b + c;
  const estimate = (c - b) / n;
  if (m === 0) return { estimate, low: 0, high: 0, p_value: 1, base_only: 0, head_only: 0 };
  const p = Math.min(1, 2 * binomialCdf(Math.min(b, c), m, 0.5));
  const [lo, hi] = clopperPearson(c, m, confidence);
  return {
    estimate,
    low: (m / n) * (2 * lo - 1),
    high: (m / n) * (2 * hi - 1),
    p_value: p,
    base_only: b,
    head_only: c,
  };
}

/**
 * The Clopper–Pearson ("exact") interval for a binomial proportion with x successes in n trials:
 * the lower end is the p with P(X ≥ x | p) = (1 − confidence)/2 (0 when x = 0), the upper end the
 * p with P(X ≤ x | p) = (1 − confidence)/2 (1 when x = n). Found by bisection on the binomial
 * tails, to about 1e-12.
 */
export function clopperPearson(x: number, n: number, confidence: number): [number, number] {
  if (!(Number.isInteger(x) && Number.isInteger(n) && x >= 0 && x <= n && n > 0)) {
    throw new StatsError(`Clopper–Pearson needs integers 0 ≤ x ≤ n, n > 0; got x=${x}, n=${n}`);
  }
  const tail = (1 - confidence) / 2;
  // P(X ≥ x | p) rises with p; P(X ≤ x | p) falls with p.
  const lower = x === 0 ? 0 : bisect((p) => 1 - binomialCdf(x - 1, n, p) - tail);
  const upper = x === n ? 1 : bisect((p) => tail - binomialCdf(x, n, p));
  return [lower, upper];
}

/** The root in (0, 1) of an increasing function. */
function bisect(f: (p: number) => number): number {
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (f(mid) < 0) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** P(X ≤ k) for X ~ Binomial(n, p), summed in log space so large n does not underflow. */
export function binomialCdf(k: number, n: number, p: number): number {
  if (k < 0) return 0;
  if (k >= n) return 1;
  if (p <= 0) return 1;
  if (p >= 1) return 0;
  const lp = Math.log(p);
  const lq = Math.log1p(-p);
  // log C(n, i), built up term by term.
  let logChoose = 0;
  const logs: number[] = [];
  for (let i = 0; i <= k; i++) {
    if (i > 0) logChoose += Math.log(n - i + 1) - Math.log(i);
    logs.push(logChoose + i * lp + (n - i) * lq);
  }
  const max = logs.reduce((a, l) => Math.max(a, l), -Infinity);
  const sum = logs.reduce((s, l) => s + Math.exp(l - max), 0);
  return Math.min(1, Math.exp(max) * sum);
}
