/**
 * Negative log-likelihood of next tokens from logits, via a numerically stable log-softmax.
 *
 * @module
 */

/**
 * NLL (nats) of `target` under the distribution of logits row `row` of a `[T][vocab]` matrix.
 *
 * @example
 * ```ts
 * tokenNll(new Float32Array([0, 0]), 2, 0, 1); // ln 2
 * ```
 */
export function tokenNll(logits: Float32Array, vocab: number, row: number, target: number): number {
  const base = row * vocab;
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) {
    const v = logits[base + i]!;
    if (v > max) max = v;
  }
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += Math.exp(logits[base + i]! - max);
  return Math.log(sum) + max - logits[base + target]!;
}

/** Mean and standard error of the mean (sample standard deviation / √n; null for n < 2). */
export function meanAndStderr(values: readonly number[]): { mean: number; stderr: number | null } {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, stderr: null };
  let ss = 0;
  for (const v of values) ss += (v - mean) ** 2;
  return { mean, stderr: Math.sqrt(ss / (n - 1) / n) };
}

/** log Σ exp(logits[base .. base + vocab)), computed stably (float64). */
export function logSumExp(logits: Float32Array, vocab: number, row: number): number {
  const base = row * vocab;
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) {
    const v = logits[base + i]!;
    if (v > max) max = v;
  }
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += Math.exp(logits[base + i]! - max);
  return Math.log(sum) + max;
}

/** Index of the largest logit of a row (the first one on ties). */
export function argmaxRow(logits: Float32Array, vocab: number, row: number): number {
  const base = row * vocab;
  let best = 0;
  for (let i = 1; i < vocab; i++) if (logits[base + i]! > logits[base + best]!) best = i;
  return best;
}

/** The two-sided 95 % normal quantile. */
export const Z95 = 1.959963984540054;
