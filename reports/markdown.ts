/**
 * Markdown tables (GitHub-flavoured) for stdout summaries and `compare` reports.
 *
 * @module
 */
import { formatSignificant } from "./format.ts";
import type { ResultRow, ResultsFile } from "../core/row.ts";
import { type Align, markdownTable } from "../core/markdown_table.ts";
import { recommend } from "./recommend.ts";
import { sensitivityMarkdown } from "./calibration_sensitivity.ts";

// Names come from suites and datasets: as markdown they must not open HTML.
const text = (s: string) => s.replace(/[&<>]/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * The line the stdout summary leads with: the recipe `deno task recommend` picks with its default
 * options, and its memory and speed; null when there is none (nothing qualifies, no quality loss was
 * measured against full precision, or the results cannot be judged).
 */
export function recommendationLine(file: ResultsFile): string | null {
  let choice;
  try {
    choice = recommend(file).choice;
  } catch {
    return null;
  }
  // Without a measured quality loss against full precision there is no evidence to lead with.
  if (!choice || choice.loss === null) return null;
  const facts = [
    choice.memory
      ? `${(choice.memory.total / 1024 ** 2).toFixed(2)} MiB at ${choice.memory.context} tokens`
      : null,
    choice.speed === null ? null : `${choice.speed.toFixed(0)} decode tokens/s`,
  ].filter((f) => f !== null);
  return `**Recommended:** ${text(choice.model)} ${text(choice.method)}/${text(choice.format)} on ${
    text(choice.backend)
  } (least quality loss${facts.length > 0 ? `; ${facts.join(", ")}` : ""}; ` +
    "`deno task recommend` for a memory budget and constraints)";
}

/**
 * The stdout summary: the recommendation line when there is one, then {@linkcode summaryTable},
 * then the calibration-sensitivity table when the suite calibrated a method on several sets.
 */
export function summaryMarkdown(file: ResultsFile): string {
  const line = recommendationLine(file);
  const sensitivity = sensitivityMarkdown(file.rows);
  return (line === null ? "" : line + "\n\n") + summaryTable(file.rows) +
    (sensitivity === "" ? "" : "\n\n" + sensitivity.trimEnd());
}

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
