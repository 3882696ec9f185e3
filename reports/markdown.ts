/**
 * Markdown tables (GitHub-flavoured) for stdout summaries and `compare` reports.
 *
 * @module
 */
import { formatSignificant, showBidiControls } from "./format.ts";
import type { ResultRow } from "./row.ts";

/** A table cell: text, a number (written with `String`) or empty. */
export type MarkdownCell = string | number | null;

/** Column alignment. */
export type Align = "left" | "right";

/**
 * A GitHub-flavoured markdown table, padded so it also reads well as plain text. `|` in cells is
 * escaped as `\|` and line breaks become spaces, so no cell can break the table; control
 * characters become their visible symbols (␛) and bidirectional controls `[U+202E]`, so no cell
 * can drive a terminal or reorder text. Columns align right
 * when every non-empty cell is a number, left otherwise, unless `align` says otherwise. Short rows
 * are padded with empty cells.
 *
 * @throws {RangeError} when a row has more cells than there are headers.
 */
export function markdownTable(
  headers: string[],
  rows: MarkdownCell[][],
  align?: Align[],
): string {
  rows.forEach((row, i) => {
    if (row.length > headers.length) {
      throw new RangeError(`Row ${i} has ${row.length} cells; the table has ${headers.length}`);
    }
  });
  const aligns = headers.map((_, c) => align?.[c] ?? inferAlign(rows.map((row) => row[c] ?? null)));
  const head = headers.map(escapeCell);
  const body = rows.map((row) => headers.map((_, c) => escapeCell(row[c] ?? null)));
  const widths = head.map((h, c) =>
    Math.max(3, width(h), ...body.map((cells) => width(cells[c]!)))
  );
  const line = (cells: string[]) =>
    `| ${cells.map((cell, c) => pad(cell, widths[c]!, aligns[c]!)).join(" | ")} |`;
  const rule = `| ${
    widths.map((w, c) => aligns[c] === "right" ? "-".repeat(w - 1) + ":" : "-".repeat(w)).join(
      " | ",
    )
  } |`;
  return [line(head), rule, ...body.map(line)].join("\n") + "\n";
}

function inferAlign(cells: MarkdownCell[]): Align {
  const filled = cells.filter((cell) => cell !== null && cell !== "");
  return filled.length > 0 && filled.every((cell) => typeof cell === "number") ? "right" : "left";
}

function escapeCell(cell: MarkdownCell): string {
  if (cell === null) return "";
  // Untrusted text (names from datasets, failure details) stays text wherever the table lands: in
  // a terminal (control characters shown as symbols, ␛ for ESC), rendered as markdown (`|`
  // escaped, bidi controls spelled out). Writers escape `& < >` in their own untrusted cells.
  return showBidiControls(String(cell)).replace(/\r\n|\r|\n/g, " ")
    .replace(CONTROL, (c) => String.fromCharCode(c === "\x7f" ? 0x2421 : 0x2400 + c.charCodeAt(0)))
    .replaceAll("|", "\\|");
}

// C0 controls and DEL, which a terminal would act on.
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/g;

/** Width in code points (close enough for monospace terminals without wide characters). */
function width(text: string): number {
  return [...text].length;
}

function pad(text: string, w: number, align: Align): string {
  const fill = " ".repeat(w - width(text));
  return align === "right" ? fill + text : text + fill;
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
