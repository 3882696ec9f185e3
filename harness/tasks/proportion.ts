/**
 * Rows for per-sample pass/fail scores (JSON validity, tool-call accuracy, retrieval): the share of
 * passing samples with its standard error `sqrt(p(1−p)/(n−1))` (the sample standard deviation over
 * √n, as lm-evaluation-harness reports for accuracies) and the 95 % Wilson score interval, and a
 * `failures` row whose samples carry each sample's failure code.
 *
 * @module
 */
import type { Metric } from "./task.ts";
import { Z95 } from "./nll.ts";

/** The 95 % Wilson score interval of `k` successes in `n` trials. */
export function wilsonInterval(k: number, n: number): [number, number] {
  const p = k / n;
  const z2 = Z95 * Z95;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (Z95 / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** A row for 0/1 scores (`ids` pair them across runs). */
export function proportionMetric(
  metric: string,
  values: readonly number[],
  ids: readonly string[],
  detail: string,
): Metric {
  const n = values.length;
  const k = values.reduce((a, b) => a + b, 0);
  const p = n > 0 ? k / n : NaN;
  const [low, high] = n > 0 ? wilsonInterval(k, n) : [NaN, NaN];
  return {
    metric,
    value: p,
    unit: "fraction",
    higher_is_better: true,
    n,
    stderr: n > 1 ? Math.sqrt((p * (1 - p)) / (n - 1)) : null,
    ci_low: n > 0 ? low : null,
    ci_high: n > 0 ? high : null,
    detail,
    samples: { kind: "correct", values: [...values], ids: [...ids] },
  };
}

/**
 * The `failures` row: the share of samples whose code is not `ok`, with each sample's code as an
 * index into `codes` (listed in `detail` as `codes=ok,no_json,…` and counted as `counts=…`).
 */
export function failureMetric(
  codes: readonly string[],
  ids: readonly string[],
  known: readonly string[],
  detail: string,
): Metric {
  const list = [...known];
  for (const c of codes) if (!list.includes(c)) list.push(c);
  const counts = list.map((c) => codes.filter((x) => x === c).length);
  const failed = codes.filter((c) => c !== "ok").length;
  const row = proportionMetric("failures", codes.map((c) => c === "ok" ? 0 : 1), ids, detail);
  return {
    ...row,
    value: codes.length > 0 ? failed / codes.length : NaN,
    higher_is_better: false,
    detail: `${detail} codes=${list.join(",")} counts=` +
      list.map((c, i) => `${c}:${counts[i]}`).filter((_, i) => counts[i]! > 0).join(","),
    samples: { kind: "failure_code", values: codes.map((c) => list.indexOf(c)), ids: [...ids] },
  };
}
