/**
 * Markdown tables (GitHub-flavoured) for stdout summaries and `compare` reports.
 *
 * @module
 */
import { formatSignificant } from "./format.ts";
import type { ResultRow } from "../core/row.ts";
import { type Align, markdownTable } from "../core/markdown_table.ts";

/**
 * One line per row for the summary printed on stdout: the cell, task, dataset, metric, value (4
 * significant digits), `± stderr` (2 significant digits), bits per weight and status.
 */
export function summaryTable(rows: ResultRow[]): string {
  const headers = [
    "model",
    "method",
    "format",
    "backend",
    "task",
    "dataset",
    "metric",
    "value",
    "± stderr",
    "bpw",
    "status",
  ];
  // Names come from suites and datasets: as markdown they must not open HTML.
  const text = (s: string) => s.replace(/[&<>]/g, (c) => `&#${c.charCodeAt(0)};`);
  const body = rows.map((row) => [
    text(row.model),
    text(row.method),
    text(row.format),
    text(row.backend),
    text(row.task),
    text(row.dataset),
    text(row.metric),
    formatSignificant(row.value),
    row.stderr === null ? "" : `± ${formatSignificant(row.stderr, 2)}`,
    formatSignificant(row.bits_per_weight),
    row.status,
  ]);
  const align: Align[] = headers.map((_, c) => (c >= 7 && c <= 9 ? "right" : "left"));
  return markdownTable(headers, body, align);
}
