/**
 * The result cache: each finished cell × task is stored as one JSON file named by the hash of
 * everything that determines it, written atomically, so a run killed at any moment resumes with
 * only the unfinished work.
 *
 * @module
 */
import { join } from "node:path";
import { sha256 } from "./fingerprint.ts";
import type { ResultRow } from "../../core/row.ts";
import { writeFileAtomic } from "../../core/atomic.ts";

/** Rows as cached: everything but the run id, which belongs to the run that reads them. */
export type CachedRow = Omit<ResultRow, "run_id">;

/** A directory of cached cell × task results. */
export class ResultCache {
  constructor(readonly dir: string) {}

  /** The cache key of a JSON-serialisable description of a computation. */
  static key(parts: unknown): string {
    return sha256(JSON.stringify(parts));
  }

  /** Cached rows for a key, or undefined (a corrupt entry counts as absent). */
  async get(key: string): Promise<CachedRow[] | undefined> {
    try {
      const parsed = JSON.parse(await Deno.readTextFile(this.#path(key)));
      return Array.isArray(parsed?.rows) ? parsed.rows as CachedRow[] : undefined;
    } catch {
      return undefined;
    }
  }

  /** Stores rows under a key. */
  async put(key: string, rows: CachedRow[]): Promise<void> {
    await writeFileAtomic(this.#path(key), JSON.stringify({ key, rows }));
  }

  #path(key: string): string {
    return join(this.dir, key.slice(0, 2), `${key}.json`);
  }
}
