/**
 * results.json: the rows of results.csv plus run metadata and per-sample values (DESIGN.md, "Report
 * schema").
 *
 * JSON has no NaN or infinities: non-finite numbers are written as `null`. Row fields read that
 * back as null (unknown); `samples.values` and `samples.weights` read it back as NaN so the arrays
 * stay numeric and aligned with `ids`.
 *
 * @module
 */
import { COLUMNS, type ResultsFile, type RunMeta, type Samples } from "../core/row.ts";

/** The results.json schema version this code writes and reads. */
export const SCHEMA_VERSION = 1;

/** Thrown when a results file is missing, is not JSON, or does not have the expected shape. */
export class ResultsFileError extends Error {
  override name = "ResultsFileError";

  /**
   * @param path The file (or a label for the text) that was read.
   * @param problems What is wrong, one entry per problem, each starting with its JSON path.
   */
  constructor(readonly path: string, readonly problems: string[], options?: ErrorOptions) {
    const list = problems.length === 1 ? ` ${problems[0]}` : `\n  ${problems.join("\n  ")}`;
    super(`Results file "${path}" is not usable:${list}`, options);
  }
}

const META_KEYS: readonly (keyof RunMeta)[] = [
  "run_id",
  "suite",
  "suite_file",
  "suite_hash",
  "git_sha",
  "deno_version",
  "quantbench_version",
  "os",
  "adapter",
  "started_at",
  "finished_at",
  "argv",
];
const SAMPLE_KEYS: readonly (keyof Samples)[] = ["kind", "values", "ids", "weights"];
const ROW_KEYS: readonly string[] = [...COLUMNS, "extra", "samples"];
const TOP_KEYS: readonly string[] = ["schema_version", "meta", "rows"];
/** At most this many problems are listed; the rest are counted. */
const MAX_PROBLEMS = 20;

/**
 * The text of results.json: two-space indentation, keys in a fixed order (the schema's order for
 * known keys — `COLUMNS` for rows — then any others sorted), arrays of plain values on one line so
 * per-sample arrays stay compact, and a final newline. The same file always gives the same text.
 */
export function resultsToJson(file: ResultsFile): string {
  return stringify(file, "", TOP_KEYS) + "\n";
}

function stringify(value: unknown, indent: string, order: readonly string[] = []): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "number") return Number.isFinite(value) ? JSON.stringify(value) : "null";
  if (typeof value !== "object") return JSON.stringify(value);
  const inner = indent + "  ";
  if (Array.isArray(value)) {
    if (value.every((v) => v === null || typeof v !== "object")) {
      return `[${value.map((v) => stringify(v, inner)).join(", ")}]`;
    }
    if (value.length === 0) return "[]";
    // Items of an array take the key order given for the array (rows → row keys).
    const items = value.map((v) => inner + stringify(v, inner, order));
    return `[\n${items.join(",\n")}\n${indent}]`;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record).filter((k) => record[k] !== undefined);
  const known = order.filter((k) => keys.includes(k));
  const others = keys.filter((k) => !order.includes(k)).sort();
  const entries = [...known, ...others].map((k) =>
    `${inner}${JSON.stringify(k)}: ${stringify(record[k], inner, keyOrder(k))}`
  );
  return entries.length === 0 ? "{}" : `{\n${entries.join(",\n")}\n${indent}}`;
}

/** Key order for the value of a property, by the property's name. */
function keyOrder(key: string): readonly string[] {
  if (key === "meta") return META_KEYS;
  if (key === "samples") return SAMPLE_KEYS;
  if (key === "rows") return ROW_KEYS;
  return [];
}

/**
 * Reads and validates a results.json file.
 *
 * @throws {ResultsFileError} naming the file and what is wrong: missing file, invalid JSON (with
 * line and column), an unsupported `schema_version`, or missing and mistyped fields (with their
 * JSON paths).
 */
export async function readResults(path: string): Promise<ResultsFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const problem = error instanceof Deno.errors.NotFound
      ? "the file does not exist"
      : `the file cannot be read (${(error as Error).message})`;
    throw new ResultsFileError(path, [problem], { cause: error });
  }
  if (/\.csv$/i.test(path) || /^\uFEFF?"?run_id"?,/.test(text)) {
    // A results.csv has no per-sample values: paired statistics cannot be computed from it.
    const beside = path.replace(/[^/\\]*$/, "results.json");
    const hint = beside !== path && await exists(beside) ? ` (here: ${beside})` : "";
    throw new ResultsFileError(path, [
      "this is a results CSV, which holds no per-sample values for paired statistics; pass " +
      `the run's results.json${hint} or the run folder that holds it`,
    ]);
  }
  return parseResults(text, path);
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * Parses and validates the text of a results file; `path` only labels errors.
 *
 * @throws {ResultsFileError} as {@linkcode readResults} does.
 */
export function parseResults(text: string, path: string): ResultsFile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    const { line, column } = lineColumn(text, jsonErrorOffset(text));
    throw new ResultsFileError(
      path,
      [`invalid JSON at line ${line}, column ${column} (${(error as Error).message})`],
      { cause: error },
    );
  }
  const problems: string[] = [];
  const file = checkFile(data, problems);
  if (problems.length > 0) {
    const shown = problems.slice(0, MAX_PROBLEMS);
    if (problems.length > MAX_PROBLEMS) shown.push(`… and ${problems.length - MAX_PROBLEMS} more`);
    throw new ResultsFileError(path, shown);
  }
  return file;
}

function checkFile(data: unknown, problems: string[]): ResultsFile {
  if (!isObject(data)) {
    problems.push(`$: expected an object, got ${describe(data)}`);
    return data as ResultsFile;
  }
  if (!("schema_version" in data)) {
    problems.push("$.schema_version: missing");
  } else if (data.schema_version !== SCHEMA_VERSION) {
    // Other fields may mean something else in another version: stop here.
    problems.push(
      `$.schema_version: unsupported version ${
        JSON.stringify(data.schema_version)
      }; this quantbench reads version ${SCHEMA_VERSION}`,
    );
    return data as unknown as ResultsFile;
  }
  unknownKeys(data, TOP_KEYS, "$", problems);
  const meta = data.meta;
  if (!isObject(meta)) problems.push(`$.meta: ${expected("an object", meta)}`);
  else checkMeta(meta, problems);
  const rows = data.rows;
  if (!Array.isArray(rows)) problems.push(`$.rows: ${expected("an array", rows)}`);
  else rows.forEach((row, i) => checkRow(row, `$.rows[${i}]`, problems));
  return data as unknown as ResultsFile;
}

function checkMeta(meta: Record<string, unknown>, problems: string[]): void {
  for (const key of META_KEYS) {
    const where = `$.meta.${key}`;
    const value = meta[key];
    if (!(key in meta)) problems.push(`${where}: missing`);
    else if (key === "git_sha") nullable(value, "string", where, problems);
    else if (key === "adapter") {
      if (value !== null && !isStringRecord(value)) {
        problems.push(`${where}: ${expected("an object of strings or null", value)}`);
      }
    } else if (key === "argv") {
      if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
        problems.push(`${where}: ${expected("an array of strings", value)}`);
      }
    } else if (typeof value !== "string") problems.push(`${where}: ${expected("a string", value)}`);
  }
}

const NUMBER_COLUMNS = new Set(["value", "n", "stderr", "ci_low", "ci_high", "bits_per_weight"]);

function checkRow(row: unknown, where: string, problems: string[]): void {
  if (!isObject(row)) {
    problems.push(`${where}: ${expected("an object", row)}`);
    return;
  }
  unknownKeys(row, ROW_KEYS, where, problems);
  for (const column of COLUMNS) {
    const at = `${where}.${column}`;
    const value = row[column];
    if (!(column in row)) problems.push(`${at}: missing`);
    else if (NUMBER_COLUMNS.has(column)) nullable(value, "number", at, problems);
    else if (column === "higher_is_better") nullable(value, "boolean", at, problems);
    else if (column === "status") {
      if (value !== "ok" && value !== "failed" && value !== "skipped") {
        problems.push(`${at}: ${expected('"ok", "failed" or "skipped"', value)}`);
      }
    } else if (typeof value !== "string") problems.push(`${at}: ${expected("a string", value)}`);
  }
  if ("extra" in row) {
    const extra = row.extra;
    const plain = (v: unknown) => v === null || ["string", "number", "boolean"].includes(typeof v);
    if (!isObject(extra) || !Object.values(extra).every(plain)) {
      problems.push(
        `${where}.extra: ${expected("an object of strings, numbers, booleans", extra)}`,
      );
    }
  }
  if ("samples" in row) checkSamples(row.samples, `${where}.samples`, problems);
}

function checkSamples(samples: unknown, where: string, problems: string[]): void {
  if (!isObject(samples)) {
    problems.push(`${where}: ${expected("an object", samples)}`);
    return;
  }
  unknownKeys(samples, SAMPLE_KEYS, where, problems);
  if (typeof samples.kind !== "string") {
    problems.push(`${where}.kind: ${expected("a string", samples.kind)}`);
  }
  const values = samples.values;
  if (!isNumberArray(values)) {
    problems.push(`${where}.values: ${expected("an array of numbers", values)}`);
    return;
  }
  nullsToNaN(values);
  if ("ids" in samples) {
    const ids = samples.ids;
    if (!Array.isArray(ids) || !ids.every((v) => typeof v === "string")) {
      problems.push(`${where}.ids: ${expected("an array of strings", ids)}`);
    } else if (ids.length !== values.length) {
      problems.push(`${where}.ids: has ${ids.length} entries; values has ${values.length}`);
    }
  }
  if ("weights" in samples) {
    const weights = samples.weights;
    if (!isNumberArray(weights)) {
      problems.push(`${where}.weights: ${expected("an array of numbers", weights)}`);
    } else if (weights.length !== values.length) {
      problems.push(`${where}.weights: has ${weights.length} entries; values has ${values.length}`);
    } else nullsToNaN(weights);
  }
}

/** Numbers, or null where a non-finite number was written. */
function isNumberArray(value: unknown): value is (number | null)[] {
  return Array.isArray(value) && value.every((v) => v === null || typeof v === "number");
}

function nullsToNaN(values: (number | null)[]): void {
  values.forEach((v, i) => {
    if (v === null) values[i] = Number.NaN;
  });
}

function nullable(value: unknown, type: string, where: string, problems: string[]): void {
  if (value !== null && typeof value !== type) {
    problems.push(`${where}: ${expected(`a ${type} or null`, value)}`);
  }
}

function unknownKeys(
  value: Record<string, unknown>,
  known: readonly string[],
  where: string,
  problems: string[],
): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) problems.push(`${where}.${key}: unknown field`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isStringRecord(value: unknown): boolean {
  return isObject(value) && Object.values(value).every((v) => typeof v === "string");
}

function expected(what: string, got: unknown): string {
  return `expected ${what}, got ${describe(got)}`;
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "an array";
  if (value === null) return "null";
  if (typeof value === "object") return "an object";
  const text = JSON.stringify(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return { line, column: offset - before.lastIndexOf("\n") };
}

/**
 * The offset of the first character where `text` stops being valid JSON (RFC 8259), or its length
 * when the text ends too early. V8's messages do not always carry a position, so the grammar is
 * walked here.
 */
export function jsonErrorOffset(text: string): number {
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  const fail = (): never => {
    throw i;
  };
  const expect = (c: string) => (text[i] === c ? i++ : fail());
  const literal = (word: string) => {
    for (const c of word) expect(c);
  };
  const digits = () => {
    if (!/[0-9]/.test(text[i] ?? "")) fail();
    while (/[0-9]/.test(text[i] ?? "")) i++;
  };
  const string = () => {
    expect('"');
    for (;;) {
      const c = text[i];
      if (c === undefined || c < " ") fail();
      i++;
      if (c === '"') return;
      if (c === "\\") {
        const e = text[i];
        if (e === "u") {
          i++;
          for (let k = 0; k < 4; k++) /[0-9a-fA-F]/.test(text[i] ?? "") ? i++ : fail();
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i++;
        else fail();
      }
    }
  };
  const number = () => {
    if (text[i] === "-") i++;
    if (text[i] === "0") i++;
    else digits();
    if (text[i] === ".") {
      i++;
      digits();
    }
    if (text[i] === "e" || text[i] === "E") {
      i++;
      if (text[i] === "+" || text[i] === "-") i++;
      digits();
    }
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") {
        i++;
        return;
      }
      for (;;) {
        ws();
        string();
        ws();
        expect(":");
        value();
        ws();
        if (text[i] === ",") i++;
        else return void expect("}");
      }
    } else if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i] === ",") i++;
        else return void expect("]");
      }
    } else if (c === '"') string();
    else if (c === "t") literal("true");
    else if (c === "f") literal("false");
    else if (c === "n") literal("null");
    else if (c === "-" || /[0-9]/.test(c ?? "")) number();
    else fail();
  };
  try {
    value();
    ws();
    if (i < text.length) fail();
  } catch (offset) {
    if (typeof offset !== "number") throw offset;
    return Math.min(offset, text.length);
  }
  return text.length;
}
