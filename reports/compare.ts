/**
 * `compare`: matches the rows of two results files and judges each change against practical
 * thresholds (first version: point values only; paired statistics come later).
 *
 * Rows match on (model, method, format, backend, task, dataset, metric). Only rows that are `ok`
 * with a finite value on both sides are compared.
 *
 * Threshold lookup, for a row of task T and metric M: the first of the keys `T.M`, `M`, `T` found
 * in the command-line limits, else the first found in the suite's `thresholds`. So
 * `perplexity: {...}` covers every metric of the task `perplexity`, `ppl` covers metric `ppl` of
 * any task, and `perplexity.ppl` only that pair; a more specific key wins, and the command line
 * wins over the suite.
 *
 * Verdicts, with `worse` the change in the metric's bad direction (an increase when lower is
 * better, a decrease when higher is better):
 * - `regression`: worse by more than a limit that applies — lower is better: relative increase over
 *   `max_relative_increase` or absolute increase over `max_absolute_increase`; higher is better:
 *   relative decrease over `max_relative_decrease` or absolute drop over `max_absolute_drop`.
 *   "Over" means by more than rounding error (one part in 10⁹), so a change exactly at the limit
 *   passes.
 * - `improvement`: better by more than those same limits.
 * - `unchanged`: within the limits, or not judged (no threshold, no limit for the metric's
 *   direction, or a metric with no better direction); `judged` tells which.
 * - `not-comparable`: present on both sides but not `ok` or without a value on one of them.
 * - `base-only` / `head-only`: present on one side.
 *
 * Relative change is `(head − base) / |base|`; with a zero base any change counts as an infinite
 * relative change (and `relative_delta` is null).
 *
 * @module
 */
import { type Align, markdownTable } from "./markdown.ts";
import { formatPercent, formatSignificant } from "./format.ts";
import type { ResultRow, ResultsFile, RunMeta, Status } from "./row.ts";
import type { Threshold } from "../harness/suite/types.ts";

/** The outcome for one matched key. */
export type Verdict =
  | "regression"
  | "improvement"
  | "unchanged"
  | "base-only"
  | "head-only"
  | "not-comparable";

/** The columns rows are matched on. */
export const KEY_COLUMNS = [
  "model",
  "method",
  "format",
  "backend",
  "task",
  "dataset",
  "metric",
] as const;

/** The threshold that applied to a row and where it came from. */
export interface AppliedThreshold {
  /** The key it was found under: `task.metric`, `metric` or `task`. */
  key: string;
  source: "command line" | "suite";
  limits: Threshold;
}

/** One key's comparison. */
export interface ComparisonEntry {
  model: string;
  method: string;
  format: string;
  backend: string;
  task: string;
  dataset: string;
  metric: string;
  unit: string;
  /** From the head row, else the base row. */
  higher_is_better: boolean | null;
  base: number | null;
  head: number | null;
  /** Null when the row is absent on that side. */
  base_status: Status | null;
  head_status: Status | null;
  /** `head − base`, when both are comparable. */
  delta: number | null;
  /** `delta / |base|`, when both are comparable and base is not zero. */
  relative_delta: number | null;
  threshold: AppliedThreshold | null;
  /** Whether a limit was checked (false for unjudged `unchanged` rows and the other verdicts). */
  judged: boolean;
  verdict: Verdict;
  /** Why, in a few words, e.g. `+3.1% > 2% allowed (perplexity)`. */
  reason: string;
}

/** The comparison of two runs. */
export interface Comparison {
  base: RunMeta;
  head: RunMeta;
  /** Regressions first, then improvements, not comparable, unchanged, base-only, head-only. */
  entries: ComparisonEntry[];
}

/** Thrown for inputs that cannot be compared, e.g. a key that occurs twice in one file. */
export class CompareError extends Error {
  override name = "CompareError";
}

/** Thrown for a malformed `--threshold` value. */
export class ThresholdFlagError extends Error {
  override name = "ThresholdFlagError";
}

const ORDER: Verdict[] = [
  "regression",
  "improvement",
  "not-comparable",
  "unchanged",
  "base-only",
  "head-only",
];
/** Changes within this relative margin of a limit are rounding error, not a breach. */
const ROUNDING = 1e-9;

/**
 * Compares two runs.
 *
 * @param thresholds The suite's thresholds.
 * @param extra Limits from the command line (see {@linkcode parseThresholdFlag}); consulted before
 * `thresholds`.
 * @throws {CompareError} when a key occurs twice in one file.
 */
export function compareResults(
  base: ResultsFile,
  head: ResultsFile,
  thresholds: Record<string, Threshold>,
  extra: Record<string, Threshold> = {},
): Comparison {
  const baseRows = index(base.rows, "base");
  const headRows = index(head.rows, "head");
  const entries: ComparisonEntry[] = [];
  for (const [key, b] of baseRows) {
    const h = headRows.get(key);
    const threshold = findThreshold(b.task, b.metric, thresholds, extra);
    entries.push(h === undefined ? oneSide(b, "base-only") : judge(b, h, threshold));
  }
  for (const [key, h] of headRows) {
    if (!baseRows.has(key)) entries.push(oneSide(h, "head-only"));
  }
  // Array.prototype.sort is stable: file order is kept within a verdict.
  entries.sort((p, q) => ORDER.indexOf(p.verdict) - ORDER.indexOf(q.verdict));
  return { base: base.meta, head: head.meta, entries };
}

function index(rows: ResultRow[], side: string): Map<string, ResultRow> {
  const map = new Map<string, ResultRow>();
  for (const row of rows) {
    const key = KEY_COLUMNS.map((c) => row[c]).join("\u0000");
    if (map.has(key)) {
      throw new CompareError(
        `The ${side} results hold two rows for ${
          KEY_COLUMNS.map((c) => `${c}=${JSON.stringify(row[c])}`).join(" ")
        }`,
      );
    }
    map.set(key, row);
  }
  return map;
}

/**
 * The threshold for a task's metric: keys `task.metric`, `metric`, `task` in that order, first in
 * `extra` (command line), then in `thresholds` (suite). Null when none applies.
 */
export function findThreshold(
  task: string,
  metric: string,
  thresholds: Record<string, Threshold>,
  extra: Record<string, Threshold> = {},
): AppliedThreshold | null {
  const keys = [`${task}.${metric}`, metric, task];
  for (const [source, table] of [["command line", extra], ["suite", thresholds]] as const) {
    for (const key of keys) {
      if (Object.hasOwn(table, key)) return { key, source, limits: table[key]! };
    }
  }
  return null;
}

/**
 * Parses a `--threshold KEY=LIMIT` value: a relative worsening limit in the metric's bad direction,
 * so `ppl=0.02` fails a run whose perplexity rises by more than 2 % and `schema_valid=0.02` one
 * whose validity rate falls by more than 2 % (relative). `LIMIT` may be written as a percentage
 * (`ppl=2%`). KEY is looked up like a suite threshold key (`task.metric`, `metric` or `task`).
 *
 * @example
 * ```ts
 * parseThresholdFlag("ppl=0.02");
 * // { ppl: { max_relative_increase: 0.02, max_relative_decrease: 0.02 } }
 * ```
 * @throws {ThresholdFlagError} for a value that is not `KEY=LIMIT` with a non-negative LIMIT.
 */
export function parseThresholdFlag(flag: string): Record<string, Threshold> {
  const match = /^([^=\s]+)=(.+)$/.exec(flag.trim());
  const usage = "expected KEY=LIMIT, e.g. ppl=0.02 or ppl=2%";
  if (!match) throw new ThresholdFlagError(`Invalid --threshold ${JSON.stringify(flag)}: ${usage}`);
  const key = match[1]!;
  const text = match[2]!.trim();
  const percent = text.endsWith("%");
  const number = Number(percent ? text.slice(0, -1) : text);
  if (!Number.isFinite(number) || number < 0 || text === "%") {
    throw new ThresholdFlagError(
      `Invalid --threshold ${JSON.stringify(flag)}: the limit ${
        JSON.stringify(text)
      } is not a non-negative number; ${usage}`,
    );
  }
  const limit = percent ? number / 100 : number;
  return { [key]: { max_relative_increase: limit, max_relative_decrease: limit } };
}

function oneSide(row: ResultRow, verdict: "base-only" | "head-only"): ComparisonEntry {
  const isBase = verdict === "base-only";
  return {
    ...keyOf(row),
    unit: row.unit,
    higher_is_better: row.higher_is_better,
    base: isBase ? row.value : null,
    head: isBase ? null : row.value,
    base_status: isBase ? row.status : null,
    head_status: isBase ? null : row.status,
    delta: null,
    relative_delta: null,
    threshold: null,
    judged: false,
    verdict,
    reason: isBase ? "missing in head" : "missing in base",
  };
}

function keyOf(row: ResultRow): Pick<ComparisonEntry, (typeof KEY_COLUMNS)[number]> {
  const { model, method, format, backend, task, dataset, metric } = row;
  return { model, method, format, backend, task, dataset, metric };
}

function judge(b: ResultRow, h: ResultRow, threshold: AppliedThreshold | null): ComparisonEntry {
  const entry: ComparisonEntry = {
    ...keyOf(h),
    unit: h.unit || b.unit,
    higher_is_better: h.higher_is_better ?? b.higher_is_better,
    base: b.value,
    head: h.value,
    base_status: b.status,
    head_status: h.status,
    delta: null,
    relative_delta: null,
    threshold,
    judged: false,
    verdict: "not-comparable",
    reason: "",
  };
  const problems = [sideProblem("base", b), sideProblem("head", h)].filter((p) => p !== "");
  if (problems.length > 0) return { ...entry, reason: problems.join("; ") };

  const bv = b.value!;
  const hv = h.value!;
  const delta = hv - bv;
  const relative = bv !== 0 ? delta / Math.abs(bv) : delta === 0 ? 0 : Math.sign(delta) * Infinity;
  entry.delta = delta;
  entry.relative_delta = Number.isFinite(relative) ? relative : null;
  entry.verdict = "unchanged";

  const hib = entry.higher_is_better;
  if (threshold === null) return { ...entry, reason: "no threshold" };
  if (hib === null) return { ...entry, reason: "metric has no better direction" };
  const limits = threshold.limits;
  const relLimit = hib ? limits.max_relative_decrease : limits.max_relative_increase;
  const absLimit = hib ? limits.max_absolute_drop : limits.max_absolute_increase;
  const where = `${threshold.key}${threshold.source === "suite" ? "" : ", command line"}`;
  if (relLimit === undefined && absLimit === undefined) {
    const needs = hib ? "max_relative_decrease or max_absolute_drop" : "max_relative_increase " +
      "or max_absolute_increase";
    return { ...entry, reason: `threshold ${where} sets no ${needs}` };
  }
  // Positive = worse, in the metric's own units and relative to |base|.
  const worse = hib ? -delta : delta;
  const worseRel = hib ? -relative : relative;
  const absTolerance = ROUNDING * Math.max(Math.abs(bv), Math.abs(hv));
  const over = (amount: number, limit: number | undefined, tolerance: number) =>
    limit !== undefined && amount > limit + tolerance;
  const breaches = (sign: 1 | -1): string[] => {
    const found: string[] = [];
    if (over(sign * worseRel, relLimit, ROUNDING)) {
      found.push(`${formatPercent(relative, 3)} vs ${formatSignificant(relLimit! * 100)}% allowed`);
    }
    if (over(sign * worse, absLimit, absTolerance)) {
      found.push(`${signed(delta)} vs ${formatSignificant(absLimit!)} allowed`);
    }
    return found;
  };
  entry.judged = true;
  const regression = breaches(1);
  if (regression.length > 0) {
    return { ...entry, verdict: "regression", reason: `${regression.join(", ")} (${where})` };
  }
  const improvement = breaches(-1);
  if (improvement.length > 0) {
    return { ...entry, verdict: "improvement", reason: `${improvement.join(", ")} (${where})` };
  }
  return { ...entry, reason: `within threshold (${where})` };
}

function sideProblem(side: string, row: ResultRow): string {
  if (row.status !== "ok") return `${side} ${row.status}`;
  if (row.value === null || !Number.isFinite(row.value)) return `${side} has no value`;
  return "";
}

/** Whether any entry is a regression (the CLI then exits with status 1). */
export function comparisonHasRegression(c: Comparison): boolean {
  return c.entries.some((e) => e.verdict === "regression");
}

const MARKERS: Record<Exclude<Verdict, "base-only" | "head-only">, string> = {
  "regression": "!",
  "improvement": "+",
  "unchanged": "~",
  "not-comparable": "?",
};

/**
 * A markdown report: a header naming both runs, a one-line tally, a table of the rows present on
 * both sides (regressions first) and a section for rows present on one side only. Verdict markers
 * (in the manner of asv): `!` regression, `+` improvement, `~` unchanged (within threshold or not
 * judged; the note says which), `?` not comparable.
 */
export function renderComparisonMarkdown(c: Comparison): string {
  const count = (v: Verdict) => c.entries.filter((e) => e.verdict === v).length;
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const run = (m: RunMeta) =>
    `${m.run_id} (suite ${m.suite}${m.git_sha ? `, git ${m.git_sha.slice(0, 12)}` : ""})`;
  const tally = [
    plural(count("regression"), "regression"),
    plural(count("improvement"), "improvement"),
    `${count("unchanged")} unchanged`,
    `${count("not-comparable")} not comparable`,
  ].join(", ");
  const lines = [
    "## quantbench compare",
    "",
    `Base: ${run(c.base)}  `,
    `Head: ${run(c.head)}`,
    "",
    `${tally}; ${count("base-only")} only in base, ${count("head-only")} only in head.`,
    "",
  ];
  const both = c.entries.flatMap((e) =>
    e.verdict === "base-only" || e.verdict === "head-only" ? [] : [{ ...e, verdict: e.verdict }]
  );
  if (both.length > 0) {
    const headers = [
      "",
      ...KEY_COLUMNS,
      "base",
      "head",
      "delta",
      "change",
      "verdict",
      "note",
    ];
    const align: Align[] = headers.map((_, i) => (i >= 8 && i <= 11 ? "right" : "left"));
    const rows = both.map((e) => [
      MARKERS[e.verdict],
      ...KEY_COLUMNS.map((k) => e[k]),
      valueText(e.base, e.base_status),
      valueText(e.head, e.head_status),
      e.delta === null ? "" : signed(e.delta),
      e.delta === null ? "" : e.relative_delta === null ? "∞" : formatPercent(e.relative_delta, 3),
      e.verdict,
      e.reason,
    ]);
    lines.push(markdownTable(headers, rows, align));
    lines.push(
      "Markers: `!` regression, `+` improvement, `~` unchanged (within threshold, or not judged " +
        "as the note says), `?` not comparable.",
      "",
    );
  }
  const oneSided = c.entries.filter((e) => e.verdict === "base-only" || e.verdict === "head-only");
  if (oneSided.length > 0) {
    lines.push("### Rows on one side only", "");
    const headers = ["side", ...KEY_COLUMNS, "value", "status"];
    const align: Align[] = headers.map((h) => (h === "value" ? "right" : "left"));
    lines.push(markdownTable(
      headers,
      oneSided.map((e) => {
        const isBase = e.verdict === "base-only";
        const status = isBase ? e.base_status : e.head_status;
        return [
          isBase ? "base only" : "head only",
          ...KEY_COLUMNS.map((k) => e[k]),
          valueText(isBase ? e.base : e.head, status),
          status,
        ];
      }),
      align,
    ));
  }
  return lines.join("\n");
}

/** A change with its sign: `+0.25`, `-0.5`, `0`. */
function signed(delta: number): string {
  return delta > 0 ? `+${formatSignificant(delta)}` : formatSignificant(delta);
}

function valueText(value: number | null, status: Status | null): string {
  return status === "ok" ? formatSignificant(value, 6) : status ?? "";
}
