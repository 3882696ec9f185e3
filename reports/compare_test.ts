import assert from "node:assert/strict";
import {
  compareResults,
  comparisonHasRegression,
  findThreshold,
  parseThresholdFlag,
  renderComparisonMarkdown,
} from "./compare.ts";
import type { ResultRow } from "./row.ts";
import type { Threshold } from "../harness/suite/types.ts";
import { makeFile, makeRow } from "./test_rows.ts";

const SUITE: Record<string, Threshold> = {
  perplexity: { max_relative_increase: 0.02 },
  "json.schema_valid": { max_absolute_drop: 0.02 },
};

function json(value: number, overrides: Partial<ResultRow> = {}): ResultRow {
  return makeRow({
    task: "json",
    dataset: "json_tasks",
    metric: "schema_valid",
    value,
    higher_is_better: true,
    ...overrides,
  });
}

function baseRows(): ResultRow[] {
  return [
    makeRow({ method: "rtn", value: 10 }),
    makeRow({ method: "gptq", value: 8 }),
    json(0.95),
    makeRow({ metric: "tokens", value: 20000, higher_is_better: null }),
  ];
}

function compareWith(head: ResultRow[], thresholds = SUITE, extra?: Record<string, Threshold>) {
  return compareResults(makeFile(baseRows(), "base"), makeFile(head, "head"), thresholds, extra);
}

function entry(c: ReturnType<typeof compareResults>, method: string, metric: string) {
  const found = c.entries.find((e) => e.method === method && e.metric === metric);
  assert.ok(found, `${method} ${metric}`);
  return found;
}

Deno.test("identical runs have no regression and every entry is unchanged", () => {
  const c = compareWith(baseRows());
  assert.equal(comparisonHasRegression(c), false);
  assert.deepEqual(c.entries.map((e) => e.verdict), Array(4).fill("unchanged"));
  assert.deepEqual(c.entries.map((e) => e.delta), [0, 0, 0, 0]);
  assert.equal(entry(c, "rtn", "ppl").reason, "within threshold (perplexity)");
  assert.equal(entry(c, "rtn", "tokens").reason, "metric has no better direction");
});

Deno.test("perplexity worse beyond the 2% limit is a regression; within it is not", () => {
  const head = baseRows();
  head[0]!.value = 10.25; // +2.5 % (10.25 − 10 = 0.25; 0.25 / 10)
  head[1]!.value = 8.16; // +2.0 % exactly: at the limit, which passes
  const c = compareWith(head);
  assert.equal(comparisonHasRegression(c), true);
  const rtn = entry(c, "rtn", "ppl");
  assert.equal(rtn.verdict, "regression");
  assert.equal(rtn.delta, 0.25);
  assert.equal(rtn.relative_delta, 0.025);
  assert.equal(rtn.reason, "+2.5% vs 2% allowed (perplexity)");
  const gptq = entry(c, "gptq", "ppl");
  assert.equal(gptq.verdict, "unchanged");
  assert.equal(gptq.judged, true);
  assert.equal(c.entries[0], rtn, "regressions come first");
});

Deno.test("perplexity better beyond the limit is an improvement", () => {
  const head = baseRows();
  head[1]!.value = 7.5; // −6.25 %
  const c = compareWith(head);
  assert.equal(entry(c, "gptq", "ppl").verdict, "improvement");
  assert.equal(comparisonHasRegression(c), false);
});

Deno.test("a higher-is-better drop beyond max_absolute_drop is a regression", () => {
  const drop = (value: number) => {
    const head = baseRows();
    head[2] = json(value);
    return entry(compareWith(head), "rtn", "schema_valid");
  };
  const big = drop(0.92); // dropped 0.03 > 0.02
  assert.equal(big.verdict, "regression");
  assert.match(big.reason, /^-0\.03 vs 0\.02 allowed \(json\.schema_valid\)$/);
  // 0.95 − 0.93 is 0.020000000000000018 in doubles: rounding, not a breach.
  assert.equal(drop(0.93).verdict, "unchanged");
  assert.equal(drop(0.99).verdict, "improvement");
  // A rise of the score never counts against a higher-is-better metric.
  assert.notEqual(drop(1).verdict, "regression");
});

Deno.test("rows without a threshold are reported but never a regression", () => {
  const head = baseRows();
  head[0]!.value = 50;
  const c = compareWith(head, {});
  const rtn = entry(c, "rtn", "ppl");
  assert.equal(rtn.verdict, "unchanged");
  assert.equal(rtn.judged, false);
  assert.equal(rtn.reason, "no threshold");
  assert.equal(rtn.relative_delta, 4);
  assert.equal(comparisonHasRegression(c), false);
});

Deno.test("rows on one side only and rows that failed are listed, not judged", () => {
  const head = baseRows().filter((r) => r.method !== "gptq" || r.metric !== "ppl");
  head.push(makeRow({ method: "awq", value: 9 }));
  head[0] = makeRow({ method: "rtn", status: "failed", value: null, detail: "oom" });
  const c = compareWith(head);
  assert.deepEqual(
    c.entries.map((e) => [e.method, e.metric, e.verdict]),
    [
      ["rtn", "ppl", "not-comparable"],
      ["rtn", "schema_valid", "unchanged"],
      ["rtn", "tokens", "unchanged"],
      ["gptq", "ppl", "base-only"],
      ["awq", "ppl", "head-only"],
    ],
  );
  assert.equal(c.entries[0]!.reason, "head failed");
  const text = renderComparisonMarkdown(c);
  const [both, oneSide] = text.split("### Rows on one side only");
  assert.ok(oneSide, "one-side section present");
  assert.match(oneSide, /\| base only \| mini +\| gptq /);
  assert.match(oneSide, /\| head only \| mini +\| awq /);
  assert.ok(!both!.includes("| gptq "), "one-side rows stay out of the main table");
  assert.match(both!, /\| \? +\| mini +\| rtn .*\| failed \| .*not-comparable \| head failed/);
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
  // Command-line limits come before the suite's at every level.
  const flag = parseThresholdFlag("perplexity=0.5");
  const found = findThreshold("perplexity", "ppl", all, flag);
  assert.deepEqual([found?.key, found?.source], ["perplexity", "command line"]);
  // The lookup drives the verdict: +1.5 % breaches perplexity.ppl (1 %) but not ppl (2 %).
  const head = baseRows();
  head[0]!.value = 10.15;
  assert.equal(entry(compareWith(head, all), "rtn", "ppl").verdict, "regression");
  assert.equal(entry(compareWith(head, noExact), "rtn", "ppl").verdict, "unchanged");
  assert.equal(entry(compareWith(head, all, flag), "rtn", "ppl").verdict, "unchanged");
});

Deno.test("parseThresholdFlag gives a relative limit in the metric's bad direction", () => {
  assert.deepEqual(parseThresholdFlag("ppl=0.02"), {
    ppl: { max_relative_increase: 0.02, max_relative_decrease: 0.02 },
  });
  assert.deepEqual(parseThresholdFlag("json.schema_valid=5%"), {
    "json.schema_valid": { max_relative_increase: 0.05, max_relative_decrease: 0.05 },
  });
  // As a command-line limit it catches a 3 % relative drop in a higher-is-better score.
  const head = baseRows();
  head[2] = json(0.95 * 0.97);
  const c = compareWith(head, {}, parseThresholdFlag("schema_valid=0.02"));
  assert.equal(entry(c, "rtn", "schema_valid").verdict, "regression");
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

Deno.test("renderComparisonMarkdown puts regressions first with markers and percentages", () => {
  const head = baseRows();
  head[0]!.value = 10.25;
  head[1]!.value = 7.5;
  const text = renderComparisonMarkdown(compareWith(head));
  const tableLines = text.split("\n").filter((l) => /^\| [!+~?] /.test(l));
  assert.deepEqual(tableLines.map((l) => l[2]), ["!", "+", "~", "~"]);
  assert.match(tableLines[0]!, /\| +10 \| +10\.25 \| +\+0\.25 \| +\+2\.5% \| regression +\|/);
  assert.match(tableLines[1]!, /\| +8 \| +7\.5 \| +-0\.5 \| +-6\.25% \| improvement +\|/);
  assert.match(
    text,
    /^1 regression, 1 improvement, 2 unchanged, 0 not comparable; 0 only in base/m,
  );
  assert.match(text, /^Base: base \(suite quickstart, git 0123456789ab\)/m);
});
