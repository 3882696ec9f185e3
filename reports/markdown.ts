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
  const body = rows.map((row) => [
    row.model,
    row.method,
    row.format,
    row.backend,
    row.task,
    row.dataset,
    row.metric,
    formatSignificant(row.value),
    row.stderr === null ? "" : `± ${formatSignificant(row.stderr, 2)}`,
    formatSignificant(row.bits_per_weight),
    row.status,
  ]);
  const align: Align[] = headers.map((_, c) => (c >= 7 && c <= 9 ? "right" : "left"));
  return markdownTable(headers, body, align);
}
