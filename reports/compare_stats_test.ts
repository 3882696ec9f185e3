import assert from "node:assert/strict";
import {
  binomialCdf,
  clopperPearson,
  mcnemarExact,
  mulberry32,
  pairedBootstrap,
  quantile,
  seedFor,
  weightedMean,
} from "./compare_stats.ts";

const near = (actual: number, expected: number, tolerance: number, what = "") =>
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what} ${actual} is not within ${tolerance} of ${expected}`,
  );

Deno.test("binomialCdf matches exact sums", () => {
  // 0.7^5 + 5·0.3·0.7^4 + 10·0.3²·0.7³ = 0.16807 + 0.36015 + 0.3087
  near(binomialCdf(2, 5, 0.3), 0.83692, 1e-12);
  // P(X ≤ 1 | 10, ½) = 11 / 1024
  near(binomialCdf(1, 10, 0.5), 11 / 1024, 1e-15);
  assert.equal(binomialCdf(-1, 10, 0.5), 0);
  assert.equal(binomialCdf(10, 10, 0.5), 1);
  // Large n stays finite: P(X ≤ 5000 | 10000, ½) is just over ½.
  near(binomialCdf(5000, 10000, 0.5), 0.5 + 0.5 * 0.00797871, 1e-5);
});

Deno.test("clopperPearson matches closed forms and R's binom.test", () => {
  // x = 0: upper end 1 − (α/2)^(1/n); x = n: lower end (α/2)^(1/n).
  const [lo0, hi0] = clopperPearson(0, 10, 0.95);
  assert.equal(lo0, 0);
  near(hi0, 1 - 0.025 ** 0.1, 1e-10);
  const [lo10, hi10] = clopperPearson(10, 10, 0.95);
  near(lo10, 0.025 ** 0.1, 1e-10);
  assert.equal(hi10, 1);
  // R: binom.test(3, 10)$conf.int = 0.06673951 0.65245285
  const [lo, hi] = clopperPearson(3, 10, 0.95);
  near(lo, 0.06673951, 1e-8);
  near(hi, 0.65245285, 1e-8);
  assert.throws(() => clopperPearson(11, 10, 0.95), { name: "StatsError" });
});

Deno.test("mcnemarExact: exact p-values, accuracy change and its interval", () => {
  // 9 pairs right only in base, 1 right only in head, 40 concordant: p = 2·P(X ≤ 1 | 10, ½).
  const base = [...Array(9).fill(1), 0, ...Array(20).fill(1), ...Array(20).fill(0)];
  const head = [...Array(9).fill(0), 1, ...Array(20).fill(1), ...Array(20).fill(0)];
  const m = mcnemarExact(base, head, 0.95);
  near(m.p_value, 22 / 1024, 1e-15);
  assert.equal(m.base_only, 9);
  assert.equal(m.head_only, 1);
  near(m.estimate, -8 / 50, 1e-15);
  // Conditional interval: (m/n)(2π − 1) at R's binom.test(1, 10) ends 0.002528579, 0.445016117.
  near(m.low, (10 / 50) * (2 * 0.002528579 - 1), 1e-8);
  near(m.high, (10 / 50) * (2 * 0.445016117 - 1), 1e-8);
  assert.ok(m.high < 0, "significantly worse: the interval is below zero");
  // 3 discordant pairs all one way: p = 2/8, not significant, interval spans zero.
  const few = mcnemarExact([0, 0, 0, 1], [1, 1, 1, 1], 0.95);
  near(few.p_value, 0.25, 1e-15);
  assert.ok(few.low < 0 && few.high > 0);
  // No discordant pairs: no change at all.
  assert.deepEqual(
    mcnemarExact([1, 0, 1], [1, 0, 1], 0.95),
    { estimate: 0, low: 0, high: 0, p_value: 1, base_only: 0, head_only: 0 },
  );
  assert.throws(() => mcnemarExact([0.5], [1], 0.95), { name: "StatsError" });
});

Deno.test("mcnemarExact: the interval excludes zero exactly when p < 0.05", () => {
  for (let b = 0; b <= 12; b++) {
    for (let c = 0; c <= 12; c++) {
      const base = [...Array(b).fill(1), ...Array(c).fill(0), 1, 0];
      const head = [...Array(b).fill(0), ...Array(c).fill(1), 1, 0];
      const m = mcnemarExact(base, head, 0.95);
      assert.equal(m.low > 0 || m.high < 0, m.p_value < 0.05, `b=${b} c=${c} p=${m.p_value}`);
    }
  }
});

Deno.test("quantile interpolates like R's default (type 7)", () => {
  assert.equal(quantile([1, 2, 3, 4], 0.25), 1.75); // R: quantile(1:4, .25)
  assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
  assert.equal(quantile([5], 0.975), 5);
});

Deno.test("mulberry32 is deterministic and uniform; seedFor depends on seed and key", () => {
  const a = mulberry32(42);
  const b = mulberry32(42);
  const xs = Array.from({ length: 20000 }, () => a());
  assert.deepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => b()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  near(xs.reduce((s, x) => s + x, 0) / xs.length, 0.5, 0.01, "mean");
  assert.equal(seedFor(0, "a"), seedFor(0, "a"));
  assert.notEqual(seedFor(0, "a"), seedFor(1, "a"));
  assert.notEqual(seedFor(0, "a"), seedFor(0, "b"));
});

Deno.test("pairedBootstrap agrees with the normal-theory interval of a paired mean difference", () => {
  const n = 400;
  const base = Array.from({ length: n }, (_, i) => 2 + 0.5 * Math.sin(i));
  const diff = Array.from({ length: n }, (_, i) => 0.01 + 0.05 * Math.cos(3 * i));
  const head = base.map((b, i) => b + diff[i]!);
  const mean = diff.reduce((s, d) => s + d, 0) / n;
  const se = Math.sqrt(diff.reduce((s, d) => s + (d - mean) ** 2, 0) / n) / Math.sqrt(n);
  const r = pairedBootstrap(base, head, { resamples: 4000, confidence: 0.95, seed: 7 });
  near(r.estimate, mean, 1e-12, "estimate");
  near(r.low, mean - 1.959964 * se, 0.15 * se, "low");
  near(r.high, mean + 1.959964 * se, 0.15 * se, "high");
  // Pairing matters: the between-window spread of `base` (±0.5) does not widen the interval.
  assert.ok(r.high - r.low < 5 * se);
  // Same seed, same interval; another seed, a slightly different one.
  assert.deepEqual(pairedBootstrap(base, head, { resamples: 4000, confidence: 0.95, seed: 7 }), r);
  const other = pairedBootstrap(base, head, { resamples: 4000, confidence: 0.95, seed: 8 });
  assert.notEqual(other.low, r.low);
  near(other.low, r.low, 0.2 * se);
});

Deno.test("pairedBootstrap of a weighted mean agrees with the delta-method interval", () => {
  const n = 300;
  const w = Array.from({ length: n }, (_, i) => 50 + (i % 7) * 30);
  const base = Array.from({ length: n }, (_, i) => 1.5 + 0.4 * Math.sin(1.7 * i));
  const head = base.map((b, i) => b + 0.02 + 0.06 * Math.sin(5.3 * i + 1));
  const delta = weightedMean(head, w) - weightedMean(base, w);
  // Linearised ratio estimator: se = sqrt(Σ wᵢ² (dᵢ − Δ)²) / Σ wᵢ.
  const total = w.reduce((s, x) => s + x, 0);
  const se = Math.sqrt(
    w.reduce((s, wi, i) => s + wi ** 2 * (head[i]! - base[i]! - delta) ** 2, 0),
  ) / total;
  const r = pairedBootstrap(base, head, {
    baseWeights: w,
    headWeights: w,
    resamples: 4000,
    confidence: 0.95,
    seed: 3,
  });
  near(r.estimate, delta, 1e-12, "estimate");
  near(r.low, delta - 1.959964 * se, 0.15 * se, "low");
  near(r.high, delta + 1.959964 * se, 0.15 * se, "high");
});

Deno.test("pairedBootstrap: identical sides give [0, 0]; bad inputs throw", () => {
  const xs = [1, 2, 3, 4, 5];
  assert.deepEqual(
    pairedBootstrap(xs, xs, { resamples: 500, confidence: 0.95, seed: 0 }),
    { estimate: 0, low: 0, high: 0 },
  );
  const opts = { resamples: 500, confidence: 0.95, seed: 0 };
  assert.throws(() => pairedBootstrap([1], [1, 2], opts), { name: "StatsError" });
  assert.throws(() => pairedBootstrap([], [], opts), { name: "StatsError" });
  assert.throws(() => pairedBootstrap(xs, xs, { ...opts, resamples: 10 }), { name: "StatsError" });
  assert.throws(() => pairedBootstrap(xs, xs, { ...opts, confidence: 1 }), { name: "StatsError" });
});
