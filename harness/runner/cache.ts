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

  /**
   * Cached rows for a key, or undefined. An entry that is unreadable, not JSON, stored under
   * another key or whose rows are not rows (a damaged disk, a hand edit) counts as absent: the
   * work is recomputed and the entry rewritten. Writes are atomic, so a killed run or two runs
   * writing at once leave either no entry or a whole one.
   */
  async get(key: string): Promise<CachedRow[] | undefined> {
    try {
      const parsed = JSON.parse(await Deno.readTextFile(this.#path(key)));
      if (parsed?.key !== key || !Array.isArray(parsed.rows) || !parsed.rows.every(isRow)) {
        return undefined;
      }
      return parsed.rows as CachedRow[];
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

/** Whether a cached value has the shape of a row. */
function isRow(r: unknown): boolean {
  if (typeof r !== "object" || r === null) return false;
  const row = r as Record<string, unknown>;
  return typeof row.metric === "string" && typeof row.task === "string" &&
    ["ok", "failed", "skipped"].includes(row.status as string) &&
    (row.value === null || typeof row.value === "number");
}
