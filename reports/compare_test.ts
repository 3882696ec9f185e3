import assert from "node:assert/strict";
import {
  changeText,
  compareResults,
  comparisonHasRegression,
  comparisonToJson,
  countVerdicts,
  findThreshold,
  parseThresholdFlag,
} from "./compare.ts";
import type { ResultRow, ResultsFile } from "../core/row.ts";
import type { Threshold } from "../core/suite_types.ts";
import { makeFile, makeRow } from "../core/test_rows.ts";

const SUITE: Record<string, Threshold> = {
  perplexity: { max_relative_increase: 0.02 },
  "json.schema_valid": { max_absolute_drop: 0.02 },
};

/** Per-window NLL of a made-up model: 40 windows of 511 scored tokens. */
function windows(shift = 0, noise = 0): number[] {
  return Array.from(
    { length: 40 },
    (_, i) => 2 + 0.3 * Math.sin(i) + shift + noise * Math.sin(7.1 * i + 2),
  );
}

/** A perplexity row (`ppl` or `nll`) whose value follows from its window NLLs. */
function pplRow(metric: "ppl" | "nll", nll: number[], overrides: Partial<ResultRow> = {}) {
  const mean = nll.reduce((s, v) => s + v, 0) / nll.length;
  return makeRow({
    metric,
    unit: metric === "ppl" ? "perplexity" : "nats/token",
    value: metric === "ppl" ? Math.exp(mean) : mean,
    samples: { kind: "window_nll", values: nll, weights: nll.map(() => 511) },
    ...overrides,
  });
}

/** A 0/1 accuracy row. */
function accuracyRow(correct: number[], overrides: Partial<ResultRow> = {}): ResultRow {
  return makeRow({
    task: "tool_use",
    dataset: "bfcl",
    metric: "accuracy",
    unit: "fraction",
    higher_is_better: true,
    value: correct.reduce((s, v) => s + v, 0) / correct.length,
    samples: { kind: "correct", values: correct },
    detail: "tool_use n=50",
    ...overrides,
  });
}

function file(rows: ResultRow[], runId: string): ResultsFile {
  return makeFile(rows, runId);
}

function compare(
  base: ResultRow[],
  head: ResultRow[],
  thresholds: Record<string, Threshold> = SUITE,
  extra?: Record<string, Threshold>,
) {
  return compareResults(file(base, "base"), file(head, "head"), thresholds, extra);
}

function entry(c: ReturnType<typeof compareResults>, method: string, metric: string) {
  const found = c.entries.find((e) => e.method === method && e.metric === metric);
  assert.ok(found, `${method} ${metric}`);
  return found;
}

Deno.test("identical runs: no significant change everywhere, zero-width intervals", () => {
  const rows = () => [
    pplRow("ppl", windows()),
    pplRow("nll", windows()),
    accuracyRow([1, 0, 1, 1]),
    makeRow({ method: "gptq", status: "skipped", value: null, metric: "", detail: "no" }),
  ];
  const c = compare(rows(), rows());
  assert.deepEqual(c.entries.map((e) => e.verdict), Array(4).fill("no-change"));
  assert.equal(comparisonHasRegression(c), false);
  assert.deepEqual(entry(c, "rtn", "ppl").relative_ci, [0, 0]);
  assert.equal(entry(c, "rtn", "ppl").reason, "identical samples");
  assert.equal(entry(c, "gptq", "").reason, "skipped on both sides");
  assert.deepEqual(c.warnings, []);
});

Deno.test("a worse perplexity beyond the threshold is a regression with an interval above zero", () => {
  // Every window is 0.05 nats worse, with a little noise: PPL rises by exp(0.05) − 1 ≈ 5.1 %.
  const c = compare([pplRow("ppl", windows())], [pplRow("ppl", windows(0.05, 0.01))]);
  const e = c.entries[0]!;
  assert.equal(e.verdict, "regression");
  assert.equal(e.stat?.test, "paired bootstrap");
  assert.equal(e.stat?.quantity, "ln(ppl)");
  assert.equal(e.stat?.pairs, 40);
  // The point change of ln(PPL) is the change of the mean NLL; PPL's is exp of that, minus one.
  const meanShift = windows(0.05, 0.01).reduce((s, v, i) => s + v - windows()[i]!, 0) / 40;
  assert.ok(Math.abs(e.stat!.delta - meanShift) < 1e-12);
  assert.ok(Math.abs(e.relative_delta! - Math.expm1(meanShift)) < 1e-12);
  const [lo, hi] = e.relative_ci!;
  assert.ok(lo > 0.02 && lo < e.relative_delta! && hi > e.relative_delta!, `${lo} ${hi}`);
  // The metric-unit interval is the relative one times the base value.
  assert.ok(Math.abs(e.delta_ci![0] - lo * e.base!) < 1e-12);
  assert.match(e.reason, /^significantly worse, beyond 2% \(perplexity\)$/);
  assert.match(changeText(e), /^\+5\.\d+% \[\+\d\.\d+%, \+\d\.\d+%\]$/);
  assert.equal(comparisonHasRegression(c), true);
});

Deno.test("significant but within the threshold is no change; beyond it but noisy is notable", () => {
  const small = compare([pplRow("ppl", windows())], [pplRow("ppl", windows(0.005))]).entries[0]!;
  assert.equal(small.significant, true);
  assert.equal(small.verdict, "no-change");
  assert.equal(small.reason, "significantly worse, within 2% (perplexity)");
  // +3 % on average, but windows swing ±0.5 nats either way: not significant.
  const noisy = compare([pplRow("ppl", windows())], [pplRow("ppl", windows(0.03, 0.5))])
    .entries[0]!;
  assert.ok(noisy.relative_delta! > 0.02);
  assert.equal(noisy.significant, false);
  assert.equal(noisy.verdict, "notable");
  assert.equal(noisy.reason, "not significant, beyond 2% (perplexity)");
});

Deno.test("a better perplexity is an improvement", () => {
  const c = compare([pplRow("ppl", windows())], [pplRow("ppl", windows(-0.05, 0.01))]);
  assert.equal(c.entries[0]!.verdict, "improvement");
  assert.equal(comparisonHasRegression(c), false);
});

Deno.test("without thresholds significance decides; with some, ungated metrics are notable", () => {
  const base = [pplRow("ppl", windows()), pplRow("nll", windows())];
  const head = [pplRow("ppl", windows(0.01, 0.001)), pplRow("nll", windows(0.01, 0.001))];
  const none = compare(base, head, {});
  assert.deepEqual(none.entries.map((e) => e.verdict), ["regression", "regression"]);
  assert.match(none.entries[0]!.reason, /no thresholds set, so significance decides/);
  // `ppl` gates ppl (1 % > 0.5 %); nll has no threshold of its own.
  const some = compare(base, head, {}, parseThresholdFlag("ppl=0.5%"));
  assert.equal(entry(some, "rtn", "ppl").verdict, "regression");
  assert.equal(entry(some, "rtn", "nll").verdict, "notable");
  assert.equal(entry(some, "rtn", "ppl").threshold?.source, "command line");
});

Deno.test("accuracies use McNemar's exact test", () => {
  // 9 questions right only in base, 1 right only in head, 40 the same.
  const base = [...Array(9).fill(1), 0, ...Array(20).fill(1), ...Array(20).fill(0)];
  const head = [...Array(9).fill(0), 1, ...Array(20).fill(1), ...Array(20).fill(0)];
  const c = compare([accuracyRow(base)], [accuracyRow(head)], {});
  const e = c.entries[0]!;
  assert.equal(e.stat?.test, "McNemar exact");
  assert.ok(Math.abs(e.stat!.p_value! - 22 / 1024) < 1e-15);
  assert.deepEqual(e.stat?.discordant, { base_only: 9, head_only: 1 });
  assert.ok(Math.abs(e.delta! - -8 / 50) < 1e-12);
  assert.ok(e.delta_ci![1] < 0);
  assert.equal(e.verdict, "regression");
  // With an absolute-drop limit of 0.2, a drop of 0.16 is significant but allowed.
  const allowed = compare([accuracyRow(base)], [accuracyRow(head)], {
    accuracy: { max_absolute_drop: 0.2 },
  });
  assert.equal(allowed.entries[0]!.verdict, "no-change");
});

Deno.test("samples pair by id; rows whose samples do not reproduce the value are judged on values", () => {
  const ids = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `q${i + from}`);
  const b = accuracyRow([1, 1, 0, 1], {
    samples: { kind: "correct", values: [1, 1, 0, 1], ids: ids(4) },
  });
  // Head lost q0 and gained q4; q1..q3 pair up.
  const h = accuracyRow([1, 0, 1, 1], {
    samples: { kind: "correct", values: [1, 0, 1, 1], ids: ids(4, 1) },
  });
  const e = compare([b], [h], {}).entries[0]!;
  assert.equal(e.stat?.pairs, 3);
  assert.equal(e.stat?.unpaired, 2);
  assert.match(e.reason, /2 samples unpaired/);
  const wrong = pplRow("ppl", windows(), { value: 99 });
  const w = compare([wrong], [pplRow("ppl", windows(0.2))]).entries[0]!;
  assert.equal(w.stat, null);
  assert.match(w.reason, /the samples do not reproduce the values/);
  assert.match(w.reason, /judged on values/);
});

Deno.test("changed protocols, failures, skips and one-sided rows are reported, not matched", () => {
  const base = [
    pplRow("ppl", windows()),
    pplRow("ppl", windows(), { method: "gptq" }),
    pplRow("ppl", windows(), { method: "awq" }),
    pplRow("ppl", windows(), { method: "old" }),
    makeRow({ method: "hqq", status: "failed", value: null, detail: "oom" }),
  ];
  const head = [
    pplRow("ppl", windows(), { detail: "ppl protocol=gptq ctx=256 bos=false unit=token" }),
    makeRow({ method: "gptq", status: "failed", value: null, detail: "NaN in layer 3" }),
    makeRow({ method: "awq", status: "skipped", value: null, detail: "no calibration" }),
    pplRow("ppl", windows(), { method: "new" }),
    pplRow("ppl", windows(), { method: "hqq" }),
  ];
  const c = compare(base, head);
  assert.deepEqual(
    c.entries.map((e) => [e.method, e.verdict]),
    [
      ["gptq", "broken"],
      ["rtn", "not-comparable"],
      ["awq", "not-comparable"],
      ["hqq", "not-comparable"],
      ["old", "base-only"],
      ["new", "head-only"],
    ],
  );
  assert.equal(
    entry(c, "rtn", "ppl").reason,
    'protocol changed: "ppl protocol=gptq ctx=512 bos=false unit=token" → ' +
      '"ppl protocol=gptq ctx=256 bos=false unit=token"',
  );
  assert.equal(entry(c, "gptq", "ppl").reason, "head failed: NaN in layer 3");
  assert.equal(entry(c, "awq", "ppl").reason, "base ok, head skipped");
  assert.equal(comparisonHasRegression(c), true, "a newly failing row fails the comparison");
  assert.deepEqual(countVerdicts(c), {
    regression: 0,
    broken: 1,
    improvement: 0,
    notable: 0,
    "not-comparable": 3,
    "no-change": 0,
    "base-only": 1,
    "head-only": 1,
  });
});

Deno.test("a changed OS or adapter is a warning, and speed rows are then not compared", () => {
  const speed = (value: number) =>
    makeRow({
      task: "throughput",
      metric: "decode",
      unit: "tokens/s",
      value,
      higher_is_better: true,
    });
  const base = file([speed(100), pplRow("ppl", windows())], "base");
  const head = file([speed(50), pplRow("ppl", windows())], "head");
  head.meta = { ...head.meta, os: "darwin-aarch64", adapter: { vendor: "apple" } };
  const c = compareResults(base, head, SUITE);
  assert.deepEqual(c.warnings, [
    "OS differs: base linux x86_64, head darwin-aarch64; speed rows are not compared",
    "adapter differs: base none, head vendor=apple; speed rows are not compared",
  ]);
  assert.equal(entry(c, "rtn", "decode").verdict, "not-comparable");
  assert.equal(entry(c, "rtn", "ppl").verdict, "no-change");
  // On the same machine the speed drop (no samples, no threshold) is notable.
  const same = compareResults(base, file([speed(50)], "head"), SUITE);
  assert.equal(entry(same, "rtn", "decode").verdict, "notable");
});

Deno.test("rows without samples are judged on their values against the threshold", () => {
  const json = (value: number) =>
    makeRow({
      task: "json",
      dataset: "json_tasks",
      metric: "schema_valid",
      value,
      higher_is_better: true,
    });
  const verdict = (value: number) => compare([json(0.95)], [json(value)]).entries[0]!;
  assert.equal(verdict(0.92).verdict, "regression"); // dropped 0.03 > 0.02
  assert.match(verdict(0.92).reason, /^beyond ±0\.02 \(json\.schema_valid\), judged on values/);
  // 0.95 − 0.93 is 0.020000000000000018 in doubles: rounding, not a breach.
  assert.equal(verdict(0.93).verdict, "no-change");
  assert.equal(verdict(0.99).verdict, "improvement");
  assert.equal(verdict(0.95).reason, "identical values");
  const plain = (value: number) => makeRow({ value });
  // +2.0 % exactly is at the limit, which passes; +2.5 % does not.
  assert.equal(compare([plain(8)], [plain(8.16)]).entries[0]!.verdict, "no-change");
  assert.equal(compare([plain(10)], [plain(10.25)]).entries[0]!.verdict, "regression");
  // A metric without a better direction cannot be judged.
  const tokens = (value: number) => makeRow({ metric: "tokens", value, higher_is_better: null });
  assert.equal(compare([tokens(1)], [tokens(2)]).entries[0]!.verdict, "notable");
});

Deno.test("bootstrap intervals are deterministic and do not depend on the other rows", () => {
  const base = [pplRow("ppl", windows()), pplRow("ppl", windows(), { method: "gptq" })];
  const head = [pplRow("ppl", windows(0.02, 0.05)), pplRow("ppl", windows(), { method: "gptq" })];
  const a = entry(compare(base, head), "rtn", "ppl");
  const b = entry(compare(base.slice(0, 1), head.slice(0, 1)), "rtn", "ppl");
  assert.deepEqual(a.stat, b.stat);
  const reseeded = compareResults(file(base, "b"), file(head, "h"), SUITE, {}, { seed: 1 });
  assert.notDeepEqual(entry(reseeded, "rtn", "ppl").stat, a.stat);
});

Deno.test("threshold keys are looked up as task.metric, then metric, then task", () => {
  const all: Record<string, Threshold> = {
    "perplexity.ppl": { max_relative_increase: 0.01 },
    ppl: { max_relative_increase: 0.02 },
    perplexity: { max_relative_increase: 0.03 },
  };
  assert.equal(findThreshold("perplexity", "ppl", all)?.key, "perplexity.ppl");
  const { "perplexity.ppl": _, ...noExact } = all;
  assert.equal(findThreshold("perplexity", "ppl", noExact)?.key, "ppl");
  assert.equal(findThreshold("perplexity", "nll", noExact)?.key, "perplexity");
  assert.equal(findThreshold("json", "schema_valid", noExact), null);
  const flag = parseThresholdFlag("perplexity=0.5");
  const found = findThreshold("perplexity", "ppl", all, flag);
  assert.deepEqual([found?.key, found?.source], ["perplexity", "command line"]);
});

Deno.test("parseThresholdFlag gives a relative limit in the metric's bad direction", () => {
  assert.deepEqual(parseThresholdFlag("ppl=0.02"), {
    ppl: { max_relative_increase: 0.02, max_relative_decrease: 0.02 },
  });
  assert.deepEqual(parseThresholdFlag("json.schema_valid=5%"), {
    "json.schema_valid": { max_relative_increase: 0.05, max_relative_decrease: 0.05 },
  });
  for (const bad of ["ppl", "=0.1", "ppl=", "ppl=-1", "ppl=abc", "ppl=%"]) {
    assert.throws(() => parseThresholdFlag(bad), { name: "ThresholdFlagError" }, bad);
  }
});

Deno.test("compareResults refuses a key that occurs twice in one file", () => {
  assert.throws(
    () => compareResults(makeFile([makeRow(), makeRow()]), makeFile([]), {}),
    {
      name: "CompareError",
      message: /^The base results hold two rows for model="mini" method="rtn"/,
    },
  );
});

Deno.test("comparisonToJson holds every entry, the counts and the settings", () => {
  const c = compare([pplRow("ppl", windows())], [pplRow("ppl", windows(0.05, 0.01))]);
  const parsed = JSON.parse(comparisonToJson(c));
  assert.equal(parsed.schema, "quantbench-compare/1");
  assert.equal(parsed.failed, true);
  assert.equal(parsed.counts.regression, 1);
  assert.deepEqual(parsed.settings, { seed: 0, resamples: 2000, confidence: 0.95 });
  assert.equal(parsed.entries.length, 1);
  assert.equal(parsed.entries[0].verdict, "regression");
  assert.equal(parsed.markers.regression, "+");
});
