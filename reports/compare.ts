/**
 * `compare`: matches the rows of two results files and judges each change with paired statistics
 * on the rows' per-sample data, combined with the suite's practical thresholds.
 *
 * Rows match on (model, method, format, backend, task, dataset, metric).
 *
 * **Statistics.** When both rows carry `samples` that pair up (same `kind`; by `ids` when both
 * have them, else by position with equal counts) and whose weighted mean q reproduces each row's
 * value as q, exp(q) or q / ln 2 (to one part in 10⁶), the change is measured on the pairs:
 * - 0/1 samples without weights (accuracies): McNemar's exact test, with a conditional
 *   Clopper–Pearson interval for the difference in accuracy.
 * - Anything else: a paired bootstrap of the change in q (`resamples` draws of whole pairs,
 *   seeded per row from `seed` and the row's key, so reruns give the same interval). Perplexity
 *   rows (value exp(q) of per-window NLL `window_nll` weighted by scored tokens) are thus compared
 *   as ln(PPL), and the interval maps back to a relative change in PPL, exp(Δ) − 1; KLD and other
 *   means are compared in their own units. The percentile interval is used.
 *
 * A change is *significant* when its 95 % interval (by default) excludes zero.
 *
 * **Thresholds** (practical limits, from the suite or `--threshold`) are looked up for a row of
 * task T and metric M under `T.M`, then `M`, then `T`, command line first; see
 * {@linkcode findThreshold}. The point change is *beyond* a limit when it exceeds it by more than
 * rounding error (one part in 10⁹).
 *
 * **Verdicts** (markers in {@linkcode MARKERS}):
 * - `regression` (`+`): significantly worse and, when a threshold applies, beyond it. When the
 *   comparison has no thresholds at all, significance alone decides; once any threshold is set,
 *   thresholds name the gated metrics, and a significant worsening of a metric without one is
 *   `notable` instead. Rows without paired samples are judged on their values against the
 *   threshold alone.
 * - `broken` (`!`): failed in head but not in base.
 * - `improvement` (`-`): significantly better and, when a threshold applies, beyond it.
 * - `notable` (`?`): worth a look but does not fail: beyond a threshold without being significant,
 *   significantly worse in an ungated metric, or changed with no way to judge it (no samples and
 *   no threshold; a metric without a better direction).
 * - `not-comparable` (`x`): the protocol changed (`detail` or unit differs), a side failed or was
 *   skipped while the other was not, or a speed row was measured in a different environment.
 * - `no-change` (`~`): no significant change, or significant but within the threshold; also rows
 *   skipped or failed the same way on both sides.
 * - `base-only` (`<`) / `head-only` (`>`): present on one side.
 *
 * The run's environment is compared too: a different OS, adapter, Deno version or suite is
 * listed in `warnings`, and speed rows (task `throughput`, or a unit in seconds or per second)
 * are then `not-comparable`, since timings from different machines say nothing about the code.
 *
 * The CLI exits with status 1 when any entry is a `regression` or `broken`.
 *
 * @module
 */
import { formatPercent, formatSignificant } from "./format.ts";
import type { ResultRow, ResultsFile, RunMeta, Samples, Status } from "../core/row.ts";
import type { Threshold } from "../core/suite_types.ts";
import { mcnemarExact, pairedBootstrap, seedFor, weightedMean } from "./compare_stats.ts";

/** The outcome for one matched key. */
export type Verdict =
  | "regression"
  | "broken"
  | "improvement"
  | "notable"
  | "not-comparable"
  | "no-change"
  | "base-only"
  | "head-only";

/** Verdicts in report order (regressions first). */
export const VERDICTS: readonly Verdict[] = [
  "regression",
  "broken",
  "improvement",
  "notable",
  "not-comparable",
  "no-change",
  "base-only",
  "head-only",
];

/**
 * One-character markers, after asv's `compare` (`+` worse, `-` better, `!` newly failing, `x` not
 * comparable), with `~` for no significant change and `?` for a change that does not fail.
 */
export const MARKERS: Readonly<Record<Verdict, string>> = {
  regression: "+",
  broken: "!",
  improvement: "-",
  notable: "?",
  "not-comparable": "x",
  "no-change": "~",
  "base-only": "<",
  "head-only": ">",
};

/** Words for each verdict, for tallies and legends. */
export const VERDICT_TEXT: Readonly<Record<Verdict, string>> = {
  regression: "regression",
  broken: "newly failing",
  improvement: "improvement",
  notable: "notable (does not fail)",
  "not-comparable": "not comparable",
  "no-change": "no significant change",
  "base-only": "only in base",
  "head-only": "only in head",
};

/** Verdicts that make `compare` exit with status 1. */
export const FAILING: readonly Verdict[] = ["regression", "broken"];

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

/** The paired statistics behind an entry. */
export interface PairedStat {
  test: "paired bootstrap" | "McNemar exact";
  /** What was compared, e.g. `ln(ppl)`, `mean window_kld`, `accuracy (correct)`. */
  quantity: string;
  /** Pairs used. */
  pairs: number;
  /** Samples present on one side only (by id). */
  unpaired: number;
  /** `head − base` in the quantity's units, with its interval. */
  delta: number;
  ci_low: number;
  ci_high: number;
  /** McNemar's exact two-sided p-value; null for the bootstrap (its interval decides). */
  p_value: number | null;
  /** Bootstrap draws; null for McNemar. */
  resamples: number | null;
  /** McNemar: pairs right only in base / only in head. */
  discordant: { base_only: number; head_only: number } | null;
}

/** Where the point change stands against the applicable limits. */
export type Practical = "worse" | "better" | "within";

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
  base_detail: string | null;
  head_detail: string | null;
  /** `head − base` in the metric's units, when both are comparable. */
  delta: number | null;
  /** `delta / |base|`, when both are comparable and base is not zero. */
  relative_delta: number | null;
  /** The interval of `delta` from the paired statistics (metric units). */
  delta_ci: [number, number] | null;
  /** The interval of `relative_delta`. */
  relative_ci: [number, number] | null;
  stat: PairedStat | null;
  /** Whether the interval excludes zero; null without statistics. */
  significant: boolean | null;
  threshold: AppliedThreshold | null;
  /** The point change against the threshold; null when no limit applies. */
  practical: Practical | null;
  verdict: Verdict;
  /** Why, in a few words, e.g. `significantly worse, beyond 2% (ppl)`. */
  reason: string;
}

/** Settings of the statistics. */
export interface StatOptions {
  /** Seed of the bootstrap (default 0). */
  seed?: number;
  /** Bootstrap draws (default 2000). */
  resamples?: number;
  /** Interval coverage (default 0.95). */
  confidence?: number;
}

/** The comparison of two runs. */
export interface Comparison {
  base: RunMeta;
  head: RunMeta;
  /** Differences between the two runs' environments or suites, in words. */
  warnings: string[];
  settings: Required<StatOptions>;
  /** Entries in {@linkcode VERDICTS} order; within a verdict, in file order. */
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

/** Changes within this relative margin of a limit are rounding error, not a breach. */
const ROUNDING = 1e-9;
/** How closely a side's samples must reproduce its row value (relative). */
const REPRODUCE = 1e-6;
const DEFAULTS: Required<StatOptions> = { seed: 0, resamples: 2000, confidence: 0.95 };

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
  options: StatOptions = {},
): Comparison {
  const settings = { ...DEFAULTS, ...options };
  const baseRows = index(base.rows, "base");
  const headRows = index(head.rows, "head");
  const warnings = environmentWarnings(base.meta, head.meta);
  const context: JudgeContext = {
    settings,
    gateAll: Object.keys(thresholds).length === 0 && Object.keys(extra).length === 0,
    environmentChanged: base.meta.os !== head.meta.os ||
      JSON.stringify(base.meta.adapter) !== JSON.stringify(head.meta.adapter),
  };
  const entries: ComparisonEntry[] = [];
  for (const [key, b] of baseRows) {
    const h = headRows.get(key);
    const threshold = findThreshold(b.task, b.metric, thresholds, extra);
    entries.push(h === undefined ? oneSide(b, "base-only") : judge(b, h, threshold, key, context));
  }
  for (const [key, h] of headRows) {
    if (!baseRows.has(key)) entries.push(oneSide(h, "head-only"));
  }
  // Array.prototype.sort is stable: file order is kept within a verdict.
  entries.sort((p, q) => VERDICTS.indexOf(p.verdict) - VERDICTS.indexOf(q.verdict));
  return { base: base.meta, head: head.meta, warnings, settings, entries };
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

/** Differences between the runs that a reader must know about before trusting the rows. */
function environmentWarnings(base: RunMeta, head: RunMeta): string[] {
  const warnings: string[] = [];
  const differ = (what: string, b: string, h: string, consequence = "") => {
    if (b !== h) warnings.push(`${what} differs: base ${b}, head ${h}${consequence}`);
  };
  const speed = "; speed rows are not compared";
  differ("suite", base.suite, head.suite);
  if (base.suite === head.suite && base.suite_hash !== head.suite_hash) {
    warnings.push(
      `suite file changed (hash ${base.suite_hash.slice(0, 12)} → ${head.suite_hash.slice(0, 12)})`,
    );
  }
  differ("OS", base.os, head.os, speed);
  differ("adapter", adapterText(base.adapter), adapterText(head.adapter), speed);
  differ("Deno", base.deno_version, head.deno_version);
  return warnings;
}

function adapterText(adapter: Record<string, string> | null): string {
  return adapter === null
    ? "none"
    : Object.entries(adapter).map(([k, v]) => `${k}=${v}`).join(", ");
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

function keyOf(row: ResultRow): Pick<ComparisonEntry, (typeof KEY_COLUMNS)[number]> {
  const { model, method, format, backend, task, dataset, metric } = row;
  return { model, method, format, backend, task, dataset, metric };
}

function blank(b: ResultRow | null, h: ResultRow | null): ComparisonEntry {
  const row = (h ?? b)!;
  return {
    ...keyOf(row),
    unit: h?.unit || b?.unit || "",
    higher_is_better: h?.higher_is_better ?? b?.higher_is_better ?? null,
    base: b?.value ?? null,
    head: h?.value ?? null,
    base_status: b?.status ?? null,
    head_status: h?.status ?? null,
    base_detail: b?.detail ?? null,
    head_detail: h?.detail ?? null,
    delta: null,
    relative_delta: null,
    delta_ci: null,
    relative_ci: null,
    stat: null,
    significant: null,
    threshold: null,
    practical: null,
    verdict: "not-comparable",
    reason: "",
  };
}

function oneSide(row: ResultRow, verdict: "base-only" | "head-only"): ComparisonEntry {
  const isBase = verdict === "base-only";
  return {
    ...blank(isBase ? row : null, isBase ? null : row),
    verdict,
    reason: isBase ? "missing in head" : "missing in base",
  };
}

interface JudgeContext {
  settings: Required<StatOptions>;
  /** No thresholds anywhere: significance alone gates every metric. */
  gateAll: boolean;
  environmentChanged: boolean;
}

function judge(
  b: ResultRow,
  h: ResultRow,
  threshold: AppliedThreshold | null,
  key: string,
  context: JudgeContext,
): ComparisonEntry {
  const entry = { ...blank(b, h), threshold };
  if (b.status !== "ok" || h.status !== "ok") return statusVerdict(entry, b, h);
  const problems = [valueProblem("base", b), valueProblem("head", h)].filter((p) => p !== "");
  if (problems.length > 0) return { ...entry, reason: problems.join("; ") };
  if (b.detail !== h.detail || b.unit !== h.unit) {
    const what = b.detail !== h.detail
      ? `${JSON.stringify(b.detail)} → ${JSON.stringify(h.detail)}`
      : `unit ${JSON.stringify(b.unit)} → ${JSON.stringify(h.unit)}`;
    return { ...entry, reason: `protocol changed: ${what}` };
  }
  if (context.environmentChanged && isSpeedRow(h)) {
    return { ...entry, reason: "speed measured on a different OS or adapter" };
  }

  const bv = b.value!;
  const hv = h.value!;
  entry.delta = hv - bv;
  entry.relative_delta = bv !== 0 ? entry.delta / Math.abs(bv) : entry.delta === 0 ? 0 : null;
  const paired = pairedStat(b, h, key, context.settings);
  const notes: string[] = paired.note ? [paired.note] : [];
  if (paired.stat) {
    const s = paired.stat;
    entry.stat = s;
    entry.significant = s.ci_low > 0 || s.ci_high < 0;
    const lo = paired.deltaToMetric(s.ci_low);
    const hi = paired.deltaToMetric(s.ci_high);
    entry.delta_ci = [lo, hi];
    entry.relative_ci = bv !== 0 ? [lo / Math.abs(bv), hi / Math.abs(bv)] : null;
  }
  const hib = entry.higher_is_better;
  const verdict = (v: Verdict, reason: string): ComparisonEntry => ({
    ...entry,
    verdict: v,
    reason: [reason, ...notes].join("; "),
  });
  if (hib === null) {
    return entry.delta === 0
      ? verdict("no-change", "identical values")
      : verdict("notable", "changed; the metric has no better direction");
  }
  const limit = practical(entry.delta, entry.relative_delta, bv, hv, hib, threshold);
  entry.practical = limit?.state ?? null;
  const beyond = limit ? `beyond ${limit.text}` : "";
  const within = limit ? `within ${limit.text}` : "";

  if (entry.stat) {
    const s = entry.stat;
    if (entry.delta === 0 && s.ci_low === 0 && s.ci_high === 0) {
      return verdict("no-change", "identical samples");
    }
    const worse = hib ? s.ci_high < 0 : s.ci_low > 0;
    const better = hib ? s.ci_low > 0 : s.ci_high < 0;
    if (worse || better) {
      const word = worse ? "significantly worse" : "significantly better";
      if (limit && limit.state === "within") return verdict("no-change", `${word}, ${within}`);
      if (limit) return verdict(worse ? "regression" : "improvement", `${word}, ${beyond}`);
      if (better) return verdict("improvement", `${word}; no threshold`);
      return context.gateAll
        ? verdict("regression", `${word}; no thresholds set, so significance decides`)
        : verdict("notable", `${word}; no threshold for this metric`);
    }
    if (limit && limit.state !== "within") return verdict("notable", `not significant, ${beyond}`);
    return verdict("no-change", limit ? `not significant, ${within}` : "not significant");
  }
  if (entry.delta === 0) return verdict("no-change", "identical values");
  if (!limit) return verdict("notable", "changed; no paired samples and no threshold to judge it");
  const onValues = "judged on values (no paired samples)";
  if (limit.state === "worse") return verdict("regression", `${beyond}, ${onValues}`);
  if (limit.state === "better") return verdict("improvement", `${beyond}, ${onValues}`);
  return verdict("no-change", `${within}, ${onValues}`);
}

function statusVerdict(entry: ComparisonEntry, b: ResultRow, h: ResultRow): ComparisonEntry {
  if (h.status === "failed" && b.status !== "failed") {
    return { ...entry, verdict: "broken", reason: `head failed: ${h.detail}` };
  }
  if (b.status === h.status) {
    return { ...entry, verdict: "no-change", reason: `${h.status} on both sides` };
  }
  return { ...entry, reason: `base ${b.status}, head ${h.status}` };
}

function valueProblem(side: string, row: ResultRow): string {
  return row.value === null || !Number.isFinite(row.value) ? `${side} has no value` : "";
}

/** Rows whose values depend on the machine: timings and rates. */
function isSpeedRow(row: ResultRow): boolean {
  return row.task === "throughput" || /(^|\/)s$|^ms$|seconds/.test(row.unit);
}

/**
 * The point change against the limits of a threshold, in the metric's bad direction. Null when no
 * threshold applies or it sets no limit for this direction.
 */
function practical(
  delta: number,
  relative: number | null,
  bv: number,
  hv: number,
  hib: boolean,
  threshold: AppliedThreshold | null,
): { state: Practical; text: string } | null {
  if (threshold === null) return null;
  const { limits } = threshold;
  const relLimit = hib ? limits.max_relative_decrease : limits.max_relative_increase;
  const absLimit = hib ? limits.max_absolute_drop : limits.max_absolute_increase;
  if (relLimit === undefined && absLimit === undefined) return null;
  const where = `${threshold.key}${threshold.source === "suite" ? "" : ", command line"}`;
  const parts = [
    relLimit === undefined ? "" : `${formatSignificant(relLimit * 100)}%`,
    absLimit === undefined ? "" : `±${formatSignificant(absLimit)}`,
  ].filter((p) => p !== "");
  const text = `${parts.join(" or ")} (${where})`;
  // Positive = worse. A zero base makes any change an infinitely large relative one.
  const worse = hib ? -delta : delta;
  const worseRel = relative === null ? Math.sign(worse) * Infinity : hib ? -relative : relative;
  const absTolerance = ROUNDING * Math.max(Math.abs(bv), Math.abs(hv));
  const over = (sign: 1 | -1) =>
    (relLimit !== undefined && sign * worseRel > relLimit + ROUNDING) ||
    (absLimit !== undefined && sign * worse > absLimit + absTolerance);
  const state: Practical = over(1) ? "worse" : over(-1) ? "better" : "within";
  return { state, text };
}

/**
 * How a row's value follows from the weighted mean q of its samples: q itself, exp(q) (perplexity
 * from mean NLL) or q / ln 2 (bits from nats). The first that reproduces both sides' values is used.
 */
const LINKS = [
  { name: "mean", to: (q: number) => q },
  { name: "exp", to: Math.exp },
  { name: "bits", to: (q: number) => q / Math.LN2 },
] as const;

/** Paired statistics of two rows, or why there are none. */
function pairedStat(
  b: ResultRow,
  h: ResultRow,
  key: string,
  settings: Required<StatOptions>,
): { stat: PairedStat | null; deltaToMetric: (dq: number) => number; note: string } {
  const none = (note: string) => ({ stat: null, deltaToMetric: (dq: number) => dq, note });
  const sb = b.samples;
  const sh = h.samples;
  if (!sb || !sh) return none(sb || sh ? "samples on one side only" : "");
  if (sb.kind !== sh.kind) return none(`sample kinds differ (${sb.kind} → ${sh.kind})`);
  const means: number[] = [];
  for (const [side, samples] of [["base", sb], ["head", sh]] as const) {
    const { values, weights } = samples;
    if (values.length === 0) return none(`${side} has no samples`);
    if (!values.every(Number.isFinite) || (weights && !weights.every(Number.isFinite))) {
      return none(`${side} samples are not all finite`);
    }
    means.push(weightedMean(values, weights));
  }
  const close = (x: number, v: number) => Math.abs(x - v) <= REPRODUCE * Math.max(1, Math.abs(v));
  const link = LINKS.find((l) =>
    close(l.to(means[0]!), b.value!) && close(l.to(means[1]!), h.value!)
  );
  if (!link) return none("the samples do not reproduce the values");
  const qBase = means[0]!;
  // A change in q, as a change of the metric's value from base.
  const deltaToMetric = (dq: number) => link.to(qBase + dq) - link.to(qBase);
  const pairs = pair(sb, sh);
  if (typeof pairs === "string") return none(pairs);
  const binary = link.name === "mean" && !sb.weights && !sh.weights &&
    [...pairs.base, ...pairs.head].every((v) => v === 0 || v === 1);
  const note = pairs.unpaired > 0 ? `${pairs.unpaired} samples unpaired` : "";
  if (binary) {
    const m = mcnemarExact(pairs.base, pairs.head, settings.confidence);
    return {
      deltaToMetric,
      note,
      stat: {
        test: "McNemar exact",
        quantity: `accuracy (${sb.kind})`,
        pairs: pairs.base.length,
        unpaired: pairs.unpaired,
        delta: m.estimate,
        ci_low: m.low,
        ci_high: m.high,
        p_value: m.p_value,
        resamples: null,
        discordant: { base_only: m.base_only, head_only: m.head_only },
      },
    };
  }
  const interval = pairedBootstrap(pairs.base, pairs.head, {
    baseWeights: pairs.baseWeights,
    headWeights: pairs.headWeights,
    resamples: settings.resamples,
    confidence: settings.confidence,
    seed: seedFor(settings.seed, key),
  });
  return {
    deltaToMetric,
    note,
    stat: {
      test: "paired bootstrap",
      quantity: link.name === "exp" ? `ln(${h.metric})` : `mean ${sb.kind}`,
      pairs: pairs.base.length,
      unpaired: pairs.unpaired,
      delta: interval.estimate,
      ci_low: interval.low,
      ci_high: interval.high,
      p_value: null,
      resamples: settings.resamples,
      discordant: null,
    },
  };
}

interface Pairs {
  base: number[];
  head: number[];
  baseWeights?: number[];
  headWeights?: number[];
  unpaired: number;
}

/** Pairs samples by id when both sides have ids, else by position; a string says why not. */
function pair(sb: Samples, sh: Samples): Pairs | string {
  if (sb.ids && sh.ids) {
    const headAt = new Map(sh.ids.map((id, i) => [id, i]));
    const at: [number, number][] = [];
    sb.ids.forEach((id, i) => {
      const j = headAt.get(id);
      if (j !== undefined) at.push([i, j]);
    });
    if (at.length === 0) return "no sample ids in common";
    return {
      base: at.map(([i]) => sb.values[i]!),
      head: at.map(([, j]) => sh.values[j]!),
      baseWeights: sb.weights && at.map(([i]) => sb.weights![i]!),
      headWeights: sh.weights && at.map(([, j]) => sh.weights![j]!),
      unpaired: sb.ids.length + sh.ids.length - 2 * at.length,
    };
  }
  if (sb.values.length !== sh.values.length) {
    return `sample counts differ (${sb.values.length} → ${sh.values.length}) and there are no ids`;
  }
  return {
    base: sb.values,
    head: sh.values,
    baseWeights: sb.weights,
    headWeights: sh.weights,
    unpaired: 0,
  };
}

/** Whether any entry fails the comparison (the CLI then exits with status 1). */
export function comparisonHasRegression(c: Comparison): boolean {
  return c.entries.some((e) => FAILING.includes(e.verdict));
}

/** How many entries have each verdict. */
export function countVerdicts(c: Comparison): Record<Verdict, number> {
  const counts = Object.fromEntries(VERDICTS.map((v) => [v, 0])) as Record<Verdict, number>;
  for (const e of c.entries) counts[e.verdict]++;
  return counts;
}

/**
 * The comparison as JSON (`schema: "quantbench-compare/1"`): both runs' metadata, the settings,
 * warnings, verdict counts, and every entry. Non-finite numbers are written as null.
 */
export function comparisonToJson(c: Comparison): string {
  const document = {
    schema: "quantbench-compare/1",
    failed: comparisonHasRegression(c),
    counts: countVerdicts(c),
    markers: MARKERS,
    ...c,
  };
  return JSON.stringify(
    document,
    (_, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v),
    2,
  ) + "\n";
}

/** A change with its sign: `+0.25`, `-0.5`, `0`. */
export function signed(delta: number, digits = 4): string {
  return delta > 0 ? `+${formatSignificant(delta, digits)}` : formatSignificant(delta, digits);
}

/**
 * The change of an entry as text, in the terms its threshold is judged in: the relative change
 * with its interval (`+2.1% [+1.6%, +2.6%]`), or the absolute change (`-0.25 [-0.4, -0.1]`) when
 * the threshold sets only absolute limits or the base is zero; empty when the sides cannot be
 * compared.
 */
export function changeText(e: ComparisonEntry): string {
  if (e.delta === null) return "";
  const limits = e.threshold?.limits ?? {};
  const absoluteOnly = (limits.max_absolute_drop !== undefined ||
    limits.max_absolute_increase !== undefined) &&
    limits.max_relative_decrease === undefined && limits.max_relative_increase === undefined;
  if (e.relative_delta !== null && !absoluteOnly) {
    const ci = e.relative_ci
      ? ` [${formatPercent(e.relative_ci[0], 3)}, ${formatPercent(e.relative_ci[1], 3)}]`
      : "";
    return `${formatPercent(e.relative_delta, 3)}${ci}`;
  }
  const ci = e.delta_ci ? ` [${signed(e.delta_ci[0], 3)}, ${signed(e.delta_ci[1], 3)}]` : "";
  return `${signed(e.delta)}${ci}`;
}
