import assert from "node:assert/strict";
import { effectiveLimit, seededRandom, shuffledIndices, stratifiedSubset } from "./random.ts";

Deno.test("sample: seeded streams repeat per (seed, label) and differ across labels", () => {
  const a = seededRandom(0, "x"), b = seededRandom(0, "x"), c = seededRandom(0, "y");
  const xs = Array.from({ length: 5 }, a);
  assert.deepEqual(Array.from({ length: 5 }, b), xs);
  assert.notDeepEqual(Array.from({ length: 5 }, c), xs);
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.deepEqual([...shuffledIndices(10, seededRandom(1, "s"))].sort((p, q) => p - q), [
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
  ]);
});

Deno.test("sample: stratified subsets keep each stratum's share (largest remainder) and order", () => {
  const items = [
    ...Array.from({ length: 60 }, (_, i) => `a${i}`),
    ...Array.from({ length: 30 }, (_, i) => `b${i}`),
    ...Array.from({ length: 10 }, (_, i) => `c${i}`),
  ];
  const pick = stratifiedSubset(items, 10, (s) => s[0]!, 7);
  const count = (p: string) => pick.filter((s) => s.startsWith(p)).length;
  assert.deepEqual([count("a"), count("b"), count("c")], [6, 3, 1]);
  assert.deepEqual(pick, [...pick].sort((x, y) => items.indexOf(x) - items.indexOf(y)));
  assert.deepEqual(stratifiedSubset(items, 10, (s) => s[0]!, 7), pick, "deterministic");
  assert.notDeepEqual(stratifiedSubset(items, 10, (s) => s[0]!, 8), pick, "seed matters");
  // 7 of 3+3+1: quotas 3, 3, 1 exactly; 5 of them: 2.14, 2.14, 0.71 → remainders give c its one.
  const small = ["a1", "a2", "a3", "b1", "b2", "b3", "c1"];
  assert.equal(stratifiedSubset(small, 5, (s) => s[0]!, 0).filter((s) => s[0] === "c").length, 1);
  assert.deepEqual(stratifiedSubset(small, 99, (s) => s[0]!, 0), small);
});

Deno.test("sample: the effective limit is the smaller of the task's and the run's", () => {
  assert.equal(effectiveLimit(0, undefined), Infinity);
  assert.equal(effectiveLimit(0, 5), 5);
  assert.equal(effectiveLimit(3, 5), 3);
  assert.equal(effectiveLimit(9, 5), 5);
});
