/**
 * Reading suite datasets.
 *
 * @module
 */
import type { DatasetSpec } from "./suite_types.ts";

/** Thrown when a dataset cannot be read or is unsuitable for a task. */
export class DatasetError extends Error {
  override name = "DatasetError";
}

/** Thrown for a file that is not UTF-8 (a {@linkcode DatasetError}: the input is at fault). */
export class EncodingError extends DatasetError {
  override name = "EncodingError";
}

/**
 * Decodes a file's bytes as UTF-8: a leading byte-order mark is dropped; bytes that are not UTF-8
 * are an {@linkcode EncodingError} naming `label`, the line and column and the byte, instead of
 * being replaced silently by U+FFFD.
 */
export function decodeUtf8(bytes: Uint8Array, label: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    const at = firstInvalidUtf8(bytes);
    let line = 1, lineStart = 0;
    for (let i = 0; i < at; i++) {
      if (bytes[i] === 0x0a) {
        line++;
        lineStart = i + 1;
      }
    }
    const byte = (bytes[at] ?? 0).toString(16).toUpperCase().padStart(2, "0");
    throw new EncodingError(
      `${label} line ${line}, byte ${at - lineStart + 1}: 0x${byte} is not UTF-8; ` +
        `save the file as UTF-8`,
      { cause: e },
    );
  }
}

/** The offset of the first byte that starts no valid UTF-8 sequence (RFC 3629). */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    let n = 0, min = 0;
    if (c < 0x80) n = 0;
    else if (c >= 0xc2 && c <= 0xdf) n = 1, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) n = 2, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) n = 3, min = 0x10000;
    else return i;
    let cp = n === 0 ? c : c & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if (d === undefined || (d & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return b.length;
}

/** Reads a UTF-8 text file (see {@linkcode decodeUtf8}); `label` names it in errors. */
export async function readUtf8(path: string, label: string): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new DatasetError(`${label}: cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  return decodeUtf8(bytes, label);
}

/** How errors name a dataset. */
export function datasetLabel(dataset: Pick<DatasetSpec, "id" | "path">): string {
  return dataset.id === dataset.path
    ? `Dataset ${dataset.path}`
    : `Dataset "${dataset.id}" (${dataset.path})`;
}

/** The text of a `text` dataset: after `skipChars` characters, then cut to `maxChars` when set. */
export async function readText(dataset: DatasetSpec): Promise<string> {
  let text = await readUtf8(dataset.path, datasetLabel(dataset));
  if (dataset.skipChars) text = text.slice(dataset.skipChars);
  return dataset.maxChars > 0 ? text.slice(0, dataset.maxChars) : text;
}

/**
 * The documents of a text dataset: the text split on `separator` (the whole text when the dataset
 * has none), each with surrounding whitespace trimmed, empty ones dropped. A JSON Lines dataset
 * gives one document per line: the line's `text` field, or the line itself when it is a string.
 */
export async function readDocuments(dataset: DatasetSpec): Promise<string[]> {
  if (dataset.kind === "jsonl") {
    return (await readJsonl(dataset)).map(({ value, line }) => {
      const text = typeof value === "string" ? value : (value as { text?: unknown } | null)?.text;
      if (typeof text !== "string") {
        throw new DatasetError(
          `${datasetLabel(dataset)} line ${line}: expected a string or an object with "text"`,
        );
      }
      return text;
    }).filter((t) => t.trim().length > 0);
  }
  const text = await readText(dataset);
  const parts = dataset.separator === undefined ? [text] : text.split(dataset.separator);
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

/**
 * How deeply a JSON Lines value may nest. Deeper values (no dataset needs them) would overflow
 * the stack of the code that walks them; they are refused with the line.
 */
export const MAX_JSON_DEPTH = 200;

/** The deepest bracket nesting of JSON text (brackets inside strings do not count). */
function nesting(text: string): number {
  let depth = 0, max = 0, inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) max = Math.max(max, ++depth);
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** One parsed line of a JSON Lines file, with its 1-based line number. */
export interface JsonlLine {
  value: unknown;
  line: number;
}

/**
 * The values of a JSON Lines dataset (blank lines skipped). A file whose whole text is one JSON
 * array is accepted too, each element counting as a line. A file with no value is an error.
 */
export async function readJsonl(
  dataset: Pick<DatasetSpec, "id" | "path">,
  parse: (text: string) => unknown = JSON.parse,
): Promise<JsonlLine[]> {
  const label = datasetLabel(dataset);
  const lines = parseJsonl(await readUtf8(dataset.path, label), label, parse);
  if (lines.length === 0) {
    throw new DatasetError(`${label} is empty: expected one JSON value per line`);
  }
  return lines;
}

/**
 * Parses JSON Lines text (see {@linkcode readJsonl}); `label` names the source in errors (e.g.
 * `Dataset "x" (path)` or `Predictions file path`); `parse` reads one value (`JSON.parse`, or a
 * parser that keeps Python's int/float distinction).
 */
export function parseJsonl(
  text: string,
  label: string,
  parse: (text: string) => unknown = JSON.parse,
): JsonlLine[] {
  if (text.trimStart().startsWith("[") && nesting(text) <= MAX_JSON_DEPTH + 1) {
    try {
      const all = parse(text);
      if (Array.isArray(all)) return all.map((value, i) => ({ value, line: i + 1 }));
    } catch {
      // Not one array: read it line by line below (a line may itself be an array).
    }
  }
  const out: JsonlLine[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    if (raw.trim() === "") continue;
    const depth = nesting(raw);
    if (depth > MAX_JSON_DEPTH) {
      throw new DatasetError(
        `${label} line ${i + 1}: values nested ${depth} deep; at most ${MAX_JSON_DEPTH} are read`,
      );
    }
    try {
      out.push({ value: parse(raw), line: i + 1 });
    } catch (e) {
      throw new DatasetError(
        `${label} line ${i + 1} is not valid JSON: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }
  return out;
}
