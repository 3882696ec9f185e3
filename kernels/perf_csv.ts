/**
 * CSV for perf results (a plain table, not the report schema).
 *
 * @module
 */

/** Writes objects with the same keys as CSV (numbers as `String(n)`, no quoting needed). */
export function rowsToCsvTable(rows: readonly object[]): string {
  if (rows.length === 0) return "";
  const keys = Object.keys(rows[0]!);
  const lines = [keys.join(",")];
  for (const r of rows) {
    lines.push(keys.map((k) => String((r as Record<string, unknown>)[k])).join(","));
  }
  return lines.join("\n") + "\n";
}
