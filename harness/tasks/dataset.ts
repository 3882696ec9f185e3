/**
 * Reading suite datasets.
 *
 * @module
 */
import type { DatasetSpec } from "../suite/types.ts";

/** Thrown when a dataset cannot be read or is unsuitable for a task. */
export class DatasetError extends Error {
  override name = "DatasetError";
}

/** The text of a `text` dataset, cut to `maxChars` characters when set. */
export async function readText(dataset: DatasetSpec): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(dataset.path);
  } catch (e) {
    throw new DatasetError(`Dataset "${dataset.id}": cannot read ${dataset.path}`, { cause: e });
  }
  return dataset.maxChars > 0 ? text.slice(0, dataset.maxChars) : text;
}
