/**
 * GitHub-flavoured markdown tables, for stdout summaries, `compare` reports and `perf` tables.
 *
 * @module
 */

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
  // escaped, bidi controls spelled out as [U+202E]). Writers escape `& < >` in their own cells.
  return String(cell).replace(/\r\n|\r|\n/g, " ")
    .replace(
      BIDI_CONTROLS,
      (c) => `[U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}]`,
    )
    .replace(CONTROL, (c) => String.fromCharCode(c === "\x7f" ? 0x2421 : 0x2400 + c.charCodeAt(0)))
    .replaceAll("|", "\\|");
}

/** Unicode's bidirectional controls (embeddings, overrides, isolates, marks). */
const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

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
