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

/** The text of a `text` dataset: after `skipChars` characters, then cut to `maxChars` when set. */
export async function readText(dataset: DatasetSpec): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(dataset.path);
  } catch (e) {
    throw new DatasetError(`Dataset "${dataset.id}": cannot read ${dataset.path}`, { cause: e });
  }
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
          `Dataset "${dataset.id}" line ${line}: expected a string or an object with "text"`,
        );
      }
      return text;
    }).filter((t) => t.trim().length > 0);
  }
  const text = await readText(dataset);
  const parts = dataset.separator === undefined ? [text] : text.split(dataset.separator);
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

/** One parsed line of a JSON Lines file, with its 1-based line number. */
export interface JsonlLine {
  value: unknown;
  line: number;
}

/**
 * The values of a JSON Lines dataset (blank lines skipped). A file whose whole text is one JSON
 * array is accepted too, each element counting as a line.
 */
export async function readJsonl(dataset: Pick<DatasetSpec, "id" | "path">): Promise<JsonlLine[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(dataset.path);
  } catch (e) {
    throw new DatasetError(`Dataset "${dataset.id}": cannot read ${dataset.path}`, { cause: e });
  }
  return parseJsonl(text, dataset.id);
}

/** Parses JSON Lines text (see {@linkcode readJsonl}); `label` names the source in errors. */
export function parseJsonl(text: string, label: string): JsonlLine[] {
  if (text.trimStart().startsWith("[")) {
    try {
      const all = JSON.parse(text);
      if (Array.isArray(all)) return all.map((value, i) => ({ value, line: i + 1 }));
    } catch {
      // Not one array: read it line by line below (a line may itself be an array).
    }
  }
  const out: JsonlLine[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    if (raw.trim() === "") continue;
    try {
      out.push({ value: JSON.parse(raw), line: i + 1 });
    } catch (e) {
      throw new DatasetError(
        `Dataset "${label}" line ${i + 1} is not valid JSON: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }
  return out;
}
