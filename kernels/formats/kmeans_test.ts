import assert from "node:assert/strict";
import { KmeansError, nearestCentroid, weightedKmeans } from "./kmeans.ts";
import { seededRandom } from "../../core/random.ts";

const options = (seed = 0) => ({ iterations: 100, tol: 0, random: seededRandom(seed, "kmeans") });

Deno.test("kmeans: two well-separated clusters end at their weighted means", () => {
  // 1-D points around −1 and +1; weights pull each mean towards the heavier point.
  const data = Float64Array.from([-1.2, -1, -0.8, 0.9, 1.1]);
  const weights = Float64Array.from([1, 1, 2, 3, 1]);
  const fit = weightedKmeans(data, 5, 1, 2, weights, options());
  const means = [...fit.centroids].sort((a, b) => a - b);
  assert.ok(Math.abs(means[0]! - (-1.2 - 1 - 1.6) / 4) < 1e-12, `${means}`);
  assert.ok(Math.abs(means[1]! - (2.7 + 1.1) / 4) < 1e-12, `${means}`);
  assert.deepEqual([...fit.labels].map((l) => fit.centroids[l]! < 0), [
    true,
    true,
    true,
    false,
    false,
  ]);
  const inertia = [-1.2, -1, -0.8].reduce((s, x, i) => s + weights[i]! * (x - means[0]!) ** 2, 0) +
    [0.9, 1.1].reduce((s, x, i) => s + weights[i + 3]! * (x - means[1]!) ** 2, 0);
  assert.ok(Math.abs(fit.inertia - inertia) < 1e-12);
});

Deno.test("kmeans: no more vectors than centroids keeps every vector; the seed picks the start", () => {
  const data = Float64Array.from([1, 2, 3, 4, 5, 6]);
  const fit = weightedKmeans(data, 3, 2, 8, undefined, options());
  assert.equal(fit.count, 3);
  assert.deepEqual([...fit.centroids], [...data]);
  assert.equal(fit.inertia, 0);
  // The initial centroids are vectors drawn with the generator: one round from two seeds.
  const points = Float64Array.from({ length: 40 }, (_, i) => i);
  const start = (
    seed: number,
  ) => [
    ...weightedKmeans(points, 40, 1, 3, undefined, { ...options(seed), iterations: 1 }).centroids,
  ];
  assert.deepEqual(start(1), start(1));
  assert.notDeepEqual(start(1), start(2));
  assert.throws(() => weightedKmeans(data, 3, 2, 0, undefined, options()), KmeansError);
});

Deno.test("kmeans: the nearest centroid is the first of equals", () => {
  const centroids = Float64Array.from([0, 0, 1, 1, 1, 1]);
  assert.equal(nearestCentroid(Float64Array.from([0.9, 0.8]), 0, centroids, 3, 2), 1);
  assert.equal(nearestCentroid(Float64Array.from([9, 0.1, 0.2]), 1, centroids, 3, 2), 0);
});
