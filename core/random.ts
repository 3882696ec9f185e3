/**
 * Seeded randomness and sample selection shared by the tasks: every random choice a task makes
 * (which questions a `limit` keeps, passkeys, needle positions, synthetic prompts) derives from the
 * suite seed and a label, so a run is repeatable and two cells see the same samples.
 *
 * @module
 */
import { createHash } from "node:crypto";

/**
 * A deterministic generator of uniform numbers in [0, 1) (mulberry32), seeded by the SHA-256 of
 * `seed` and `label` so that independent uses (different labels) do not share a stream.
 *
 * @example
 * ```ts
 * const r = seededRandom(0, "passkey");
 * r(); // the same number on every run
 * ```
 */
export function seededRandom(seed: number, label: string): () => number {
  let state = createHash("sha256").update(`${seed}\0${label}`).digest().readUInt32LE(0);
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [0, n) from a generator. */
export function randomInt(random: () => number, n: number): number {
  return Math.floor(random() * n);
}

/** A seeded Fisher–Yates permutation of 0..n−1. */
export function shuffledIndices(n: number, random: () => number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = randomInt(random, i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/**
 * At most `n` of `items`, drawn so that every stratum keeps its share: stratum sizes are allotted
 * in proportion to the stratum (largest remainder, ties to the stratum seen first), and each
 * stratum's members are drawn by a seeded shuffle. The result keeps the items' original order.
 * With `n` ≥ the number of items, all items come back.
 *
 * @example
 * ```ts
 * stratifiedSubset(["a1", "a2", "b1", "b2"], 2, (s) => s[0]!, 0); // one "a…" and one "b…"
 * ```
 */
export function stratifiedSubset<T>(
  items: readonly T[],
  n: number,
  stratum: (item: T) => string,
  seed: number,
): T[] {
  if (n >= items.length) return [...items];
  const groups = new Map<string, number[]>();
  for (const [i, item] of items.entries()) {
    const key = stratum(item);
    const group = groups.get(key);
    if (group) group.push(i);
    else groups.set(key, [i]);
  }
  const entries = [...groups.entries()];
  const quotas = entries.map(([, g]) => (g.length * n) / items.length);
  const counts = quotas.map(Math.floor);
  let left = n - counts.reduce((a, b) => a + b, 0);
  const byRemainder = quotas
    .map((q, i) => ({ i, r: q - Math.floor(q) }))
    .sort((a, b) => b.r - a.r || a.i - b.i);
  for (const { i } of byRemainder) {
    if (left === 0) break;
    counts[i]!++;
    left--;
  }
  const kept: number[] = [];
  for (const [k, [key, group]] of entries.entries()) {
    const order = shuffledIndices(group.length, seededRandom(seed, `stratum:${key}`));
    for (const j of order.slice(0, counts[k]!)) kept.push(group[j]!);
  }
  return kept.sort((a, b) => a - b).map((i) => items[i]!);
}

/** The smaller of a task's own `limit` option (0 = none) and the run's `--limit`, if any. */
export function effectiveLimit(taskLimit: unknown, runLimit: number | undefined): number {
  const own = Number(taskLimit ?? 0);
  const values = [own > 0 ? own : Infinity, runLimit ?? Infinity];
  return Math.min(...values);
}
