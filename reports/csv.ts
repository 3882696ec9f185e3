/**
 * results.csv: an RFC 4180 writer and reader for {@linkcode ResultRow}s (DESIGN.md, "Report
 * schema").
 *
 * Writing rules:
 * - Columns are {@linkcode COLUMNS} in order, then the union of every row's `extra` keys, sorted.
 * - Numbers are written with `String(n)`, the shortest text that parses back to the same double;
 *   null is an empty cell; booleans are `true` / `false`. Numeric cells are never altered.
 * - Text cells are quoted (`"` doubled) when they hold `,`, `"`, CR or LF.
 * - Formula-injection guard: a text cell that starts with `=`, `+`, `-`, `@`, tab or CR — possibly
 *   after apostrophes — gets one more leading `'`, so spreadsheets show it as text. The reader
 *   removes exactly that apostrophe, which makes the rule reversible (`'=x` is written `''=x`).
 * - Records end with CRLF, as RFC 4180 specifies.
 *
 * Reading extra columns: CSV has no types, so an extra cell reads back as a boolean when it is
 * `true`/`false`, a number when it is exactly a number's `String(n)` form, text otherwise; an empty
 * cell means the row has no such key.
 *
 * @module
 */
import { COLUMNS, type ResultRow, type Status } from "../core/row.ts";

/** Thrown for rows that cannot be written or CSV text that cannot be read. */
export class CsvError extends Error {
  override name = "CsvError";
}

type Cell = string | number | boolean | null;

const REQUIRED = new Set<string>(COLUMNS);
const GUARDED = /^'*[=+\-@\t\r]/;
const GUARD_MARK = /^'+[=+\-@\t\r]/;
const NEEDS_QUOTES = /[",\r\n]/;
/** What `String(n)` can produce for a double. */
const NUMBER_TEXT = /^(-?(\d+(\.\d+)?(e[+-]\d+)?|Infinity)|NaN)$/;

/**
 * The CSV text of `rows`: a header and one record per row, each ending with CRLF.
 *
 * @throws {CsvError} when an `extra` key repeats a required column name.
 */
export function rowsToCsv(rows: ResultRow[]): string {
  const extras = new Set<string>();
  for (const row of rows) {
    for (const key of Object.keys(row.extra ?? {})) {
      if (REQUIRED.has(key)) {
        throw new CsvError(`Extra column "${key}" repeats a required column name`);
      }
      extras.add(key);
    }
  }
  const extraColumns = [...extras].sort();
  const lines = [[...COLUMNS, ...extraColumns].map(textCell).join(",")];
  for (const row of rows) {
    const cells: string[] = COLUMNS.map((column) => cell(row[column]));
    for (const key of extraColumns) cells.push(cell(row.extra?.[key] ?? null));
    lines.push(cells.join(","));
  }
  return lines.map((line) => line + "\r\n").join("");
}

function cell(value: Cell): string {
  if (value === null) return "";
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return textCell(value);
}

function textCell(text: string): string {
  const guarded = GUARDED.test(text) ? `'${text}` : text;
  return NEEDS_QUOTES.test(guarded) ? `"${guarded.replaceAll('"', '""')}"` : guarded;
}

/**
 * Splits RFC 4180 text into records of fields. Accepts CRLF or LF line ends, quoted fields with
 * embedded commas, quotes (`""`) and line breaks, a leading byte-order mark and a missing final
 * line end. Blank lines are returned as `[""]`.
 *
 * @throws {CsvError} for an unterminated quoted field or a quote inside an unquoted field, naming
 * the line and column.
 */
export function parseCsv(text: string): string[][] {
  return parseRecords(text).map((record) => record.fields);
}

interface CsvRecord {
  fields: string[];
  /** 1-based line on which the record starts. */
  line: number;
}

function parseRecords(text: string): CsvRecord[] {
  const records: CsvRecord[] = [];
  let i = text.startsWith("\uFEFF") ? 1 : 0;
  let line = 1;
  let lineStart = i;
  while (i < text.length) {
    const record: CsvRecord = { fields: [], line };
    for (;;) {
      let field = "";
      if (text[i] === '"') {
        const openLine = line;
        const openColumn = i - lineStart + 1;
        i++;
        for (;;) {
          if (i >= text.length) {
            throw new CsvError(
              `Unterminated quoted field starting at line ${openLine}, column ${openColumn}`,
            );
          }
          const c = text[i]!;
          if (c === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (c === "\n") {
            line++;
            lineStart = i + 1;
          }
          field += c;
          i++;
        }
        if (i < text.length && !isFieldEnd(text, i)) {
          throw new CsvError(
            `Unexpected ${JSON.stringify(text[i])} after a quoted field at line ${line}, column ${
              i - lineStart + 1
            }`,
          );
        }
      } else {
        const start = i;
        while (i < text.length && !isFieldEnd(text, i)) {
          if (text[i] === '"') {
            throw new CsvError(
              `Quote inside an unquoted field at line ${line}, column ${i - lineStart + 1}`,
            );
          }
          i++;
        }
        field = text.slice(start, i);
      }
      record.fields.push(field);
      if (text[i] === ",") {
        i++;
        continue;
      }
      // End of record: CRLF, LF or end of text.
      i += text[i] === "\r" ? 2 : text[i] === "\n" ? 1 : 0;
      line++;
      lineStart = i;
      break;
    }
    records.push(record);
  }
  return records;
}

function isFieldEnd(text: string, i: number): boolean {
  const c = text[i];
  return c === "," || c === "\n" || (c === "\r" && text[i + 1] === "\n");
}

/**
 * The rows of a results.csv, reversing {@linkcode rowsToCsv}. The header must name every required
 * column (in any order); other columns become `extra`. Blank lines are skipped.
 *
 * @throws {CsvError} for a missing column, a record of the wrong length or a cell of the wrong
 * type, naming the line and column.
 */
export function csvToRows(text: string): ResultRow[] {
  const records = parseRecords(text).filter((r) => !(r.fields.length === 1 && r.fields[0] === ""));
  const header = records.shift();
  if (header === undefined) throw new CsvError("CSV text is empty; expected a header line");
  const names = header.fields.map(unguard);
  const missing = COLUMNS.filter((column) => !names.includes(column));
  if (missing.length > 0) {
    throw new CsvError(`CSV header lacks required column(s) ${missing.map(quote).join(", ")}`);
  }
  return records.map((record) => {
    if (record.fields.length !== names.length) {
      throw new CsvError(
        `Line ${record.line} has ${record.fields.length} fields; the header has ${names.length}`,
      );
    }
    const raw: Record<string, string> = {};
    const extra: Record<string, Cell> = {};
    names.forEach((name, k) => {
      const value = record.fields[k]!;
      if (REQUIRED.has(name)) raw[name] = value;
      else if (value !== "") extra[name] = inferCell(value);
    });
    const at = (column: string) => `line ${record.line}, column "${column}"`;
    const text = (column: string) => unguard(raw[column]!);
    const number = (column: string) => parseNumber(raw[column]!, at(column));
    const row: ResultRow = {
      run_id: text("run_id"),
      suite: text("suite"),
      model: text("model"),
      method: text("method"),
      format: text("format"),
      backend: text("backend"),
      task: text("task"),
      dataset: text("dataset"),
      metric: text("metric"),
      value: number("value"),
      unit: text("unit"),
      higher_is_better: parseBoolean(raw["higher_is_better"]!, at("higher_is_better")),
      n: number("n"),
      stderr: number("stderr"),
      ci_low: number("ci_low"),
      ci_high: number("ci_high"),
      bits_per_weight: number("bits_per_weight"),
      status: parseStatus(raw["status"]!, at("status")),
      detail: text("detail"),
    };
    if (Object.keys(extra).length > 0) row.extra = extra;
    return row;
  });
}

function unguard(text: string): string {
  return GUARD_MARK.test(text) ? text.slice(1) : text;
}

function inferCell(text: string): Cell {
  if (text === "true") return true;
  if (text === "false") return false;
  const n = Number(text);
  return String(n) === text ? n : unguard(text);
}

function parseNumber(text: string, where: string): number | null {
  if (text === "") return null;
  if (!NUMBER_TEXT.test(text)) {
    throw new CsvError(`Expected a number at ${where}, got ${quote(text)}`);
  }
  return Number(text);
}

function parseBoolean(text: string, where: string): boolean | null {
  if (text === "") return null;
  if (text === "true") return true;
  if (text === "false") return false;
  throw new CsvError(`Expected true, false or an empty cell at ${where}, got ${quote(text)}`);
}

function parseStatus(text: string, where: string): Status {
  if (text === "ok" || text === "failed" || text === "skipped") return text;
  throw new CsvError(`Expected ok, failed or skipped at ${where}, got ${quote(text)}`);
}

function quote(text: string): string {
  return JSON.stringify(text);
}
