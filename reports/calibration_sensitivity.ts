/**
 * Calibration sensitivity — the "calibration mismatch" pitfall, measured. A suite method whose
 * `calibration` lists several sets runs once per set (method id `<id>@<dataset>`, rows with
 * `extra.calibration_of` and `extra.calibration`); this groups those rows by model, method entry,
 * format, backend and quality metric, and gives the metric on each calibration set with its
 * spread: `max − min`, and relative to the best value (the lowest for a metric where lower is
 * better, e.g. perplexity; the highest otherwise), so "ppl +4.1 %" reads as "the worst calibration
 * set costs 4.1 % perplexity against the best".
 *
 * @module
 */
import type { ResultRow } from "../core/row.ts";
import { markdownTable } from "../core/markdown_table.ts";
import { formatSignificant } from "./format.ts";

/** The quality metric of each task that the table shows (as `recommend` judges quality). */
const QUALITY: Readonly<Record<string, string>> = {
  perplexity: "ppl",
  kld: "kld",
  json: "schema_valid",
  tool_use: "accuracy",
  long_context: "accuracy",
};

/** One method × format × metric across its calibration sets. */
export interface SensitivityLine {
  model: string;
  /** The suite's method entry (`calibration_of`), e.g. `gptq`. */
  method: string;
  format: string;
  backend: string;
  task: string;
  dataset: string;
  metric: string;
  higher_is_better: boolean | null;
  /** The metric by calibration dataset, in the order the suite lists the sets. */
  values: { calibration: string; value: number }[];
  /** `max − min` over the sets. */
  spread: number;
  /** `spread / |best|` (0 when the best value is 0 and the spread is too). */
  relative: number;
  /** The calibration set with the best value. */
  best: string;
  /** The calibration set with the worst value. */
  worst: string;
}

/**
 * The calibration-sensitivity lines of a results file's rows: one per method entry × format ×
 * quality metric measured on at least two calibration sets; empty when the suite used none.
 */
export function calibrationSensitivity(rows: readonly ResultRow[]): SensitivityLine[] {
  const groups = new Map<string, { first: ResultRow; of: string; rows: ResultRow[] }>();
  for (const r of rows) {
    const of = r.extra?.calibration_of;
    const set = r.extra?.calibration;
    if (typeof of !== "string" || typeof set !== "string") continue;
    if (r.status !== "ok" || r.value === null || QUALITY[r.task] !== r.metric) continue;
    const key = [r.model, of, r.format, r.backend, r.task, r.dataset, r.metric].join("\u0000");
    const g = groups.get(key);
    if (g) g.rows.push(r);
    else groups.set(key, { first: r, of, rows: [r] });
  }
  const lines: SensitivityLine[] = [];
  for (const { first, of, rows: group } of groups.values()) {
    if (group.length < 2) continue;
    const values = group.map((r) => ({
      calibration: String(r.extra!.calibration),
      value: r.value!,
    }));
    const higher = first.higher_is_better === true;
    const sorted = [...values].sort((a, b) => higher ? b.value - a.value : a.value - b.value);
    const best = sorted[0]!;
    const worst = sorted[sorted.length - 1]!;
    const spread = Math.abs(best.value - worst.value);
    lines.push({
      model: first.model,
      method: of,
      format: first.format,
      backend: first.backend,
      task: first.task,
      dataset: first.dataset,
      metric: first.metric,
      higher_is_better: first.higher_is_better,
      values,
      spread,
      relative: spread === 0 ? 0 : spread / Math.abs(best.value),
      best: best.calibration,
      worst: worst.calibration,
    });
  }
  return lines;
}

/** The headers and cells of the sensitivity table (shared by the markdown and HTML reports). */
export function sensitivityTable(lines: readonly SensitivityLine[]): {
  headers: string[];
  body: string[][];
} {
  const headers = [
    "model",
    "method",
    "format",
    "backend",
    "metric",
    "by calibration set",
    "spread (max − min)",
    "relative",
    "worst set",
  ];
  const body = lines.map((l) => [
    l.model,
    l.method,
    l.format,
    l.backend,
    `${l.task}${l.dataset ? `(${l.dataset})` : ""}.${l.metric}`,
    l.values.map((v) => `${v.calibration}: ${formatSignificant(v.value)}`).join(", "),
    formatSignificant(l.spread, 3),
    `${(l.relative * 100).toFixed(1)} %`,
    l.worst,
  ]);
  return { headers, body };
}

/** The sensitivity table as markdown under a heading; "" when there are no lines. */
export function sensitivityMarkdown(rows: readonly ResultRow[]): string {
  const lines = calibrationSensitivity(rows);
  if (lines.length === 0) return "";
  const { headers, body } = sensitivityTable(lines);
  // Names come from suites and datasets: as markdown they must not open HTML.
  const text = (s: string) => s.replace(/[&<>]/g, (c) => `&#${c.charCodeAt(0)};`);
  return "## Calibration sensitivity\n\n" +
    markdownTable(headers, body.map((r) => r.map(text))) + "\n";
}
