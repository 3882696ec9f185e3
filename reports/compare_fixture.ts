/**
 * Hand-built base and head results for the comparison writer tests and the browser test: one row
 * of every verdict, per-window samples, a McNemar row, and names that try to inject markup.
 *
 * @module
 */
import type { ResultRow, ResultsFile } from "../core/row.ts";
import { makeFile, makeRow } from "../core/test_rows.ts";
import { compareResults, type Comparison } from "./compare.ts";

/** A model name that would run script and mention a user if a writer failed to escape it. */
export const HOSTILE = `<script>alert(1)</script>@octocat|x`;

function nll(shift: number, noise = 0.01): number[] {
  return Array.from(
    { length: 30 },
    (_, i) => 2 + 0.3 * Math.sin(i) + shift + noise * Math.cos(5 * i),
  );
}

function ppl(method: string, values: number[], overrides: Partial<ResultRow> = {}): ResultRow {
  const mean = values.reduce((s, v) => s + v, 0) / values.length;
  return makeRow({
    method,
    unit: "perplexity",
    value: Math.exp(mean),
    samples: { kind: "window_nll", values, weights: values.map(() => 255) },
    ...overrides,
  });
}

function accuracy(correct: number[]): ResultRow {
  return makeRow({
    method: "gptq",
    task: "tool_use",
    dataset: "bfcl",
    metric: "accuracy",
    unit: "fraction",
    higher_is_better: true,
    value: correct.reduce((s, v) => s + v, 0) / correct.length,
    samples: { kind: "correct", values: correct },
    detail: "tool_use n=40",
  });
}

/** Base and head runs whose comparison has every verdict. */
export function fixtureRuns(): { base: ResultsFile; head: ResultsFile } {
  const right = [...Array(30).fill(1), ...Array(10).fill(0)];
  const worse = [...Array(20).fill(1), ...Array(20).fill(0)];
  const base = [
    ppl("rtn", nll(0)),
    ppl("awq", nll(0)),
    ppl("hqq", nll(0)),
    ppl("smooth", nll(0)),
    ppl(HOSTILE, nll(0), { model: HOSTILE, detail: `ppl <b>ctx</b>=512 "quoted"` }),
    ppl("quip", nll(0)),
    accuracy(right),
    makeRow({ method: "old", value: 9 }),
  ];
  const head = [
    ppl("rtn", nll(0.05)), // regression
    ppl("awq", nll(-0.05)), // improvement
    ppl("hqq", nll(0.03, 0.6)), // notable: beyond 2 % but noisy
    makeRow({ method: "smooth", status: "failed", value: null, detail: "NaN <in> layer 3" }),
    ppl(HOSTILE, nll(0), { model: HOSTILE, detail: `ppl <b>ctx</b>=256 "quoted"` }), // protocol
    ppl("quip", nll(0)), // no change
    accuracy(worse), // regression (McNemar)
    makeRow({ method: "new", value: 8 }),
  ];
  return { base: makeFile(base, "base-run"), head: makeFile(head, "head-run") };
}

/** The comparison of {@linkcode fixtureRuns} with a 2 % perplexity and 5 % accuracy threshold. */
export function fixtureComparison(): Comparison {
  const { base, head } = fixtureRuns();
  return compareResults(base, head, {
    perplexity: { max_relative_increase: 0.02, max_relative_decrease: 0.02 },
    accuracy: { max_absolute_drop: 0.05 },
  });
}
