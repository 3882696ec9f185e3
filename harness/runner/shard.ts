/**
 * `--shard I/N`: a deterministic split of a suite's cells, so N machines can each run one part.
 * Cell k (in expansion order) belongs to shard (k mod N) + 1.
 *
 * @module
 */
import type { Cell } from "../../core/suite_types.ts";

/** Thrown for a malformed `--shard` value. */
export class ShardError extends Error {
  override name = "ShardError";
}

/** A shard: the I-th of N (1-based). */
export interface Shard {
  index: number;
  count: number;
}

/** Parses `I/N` with 1 ≤ I ≤ N. */
export function parseShard(text: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index < 1 || index > count) {
    throw new ShardError(`--shard must be I/N with 1 ≤ I ≤ N (e.g. 2/4), got "${text}"`);
  }
  return { index, count };
}

/** The cells of one shard. */
export function selectShard(cells: Cell[], shard: Shard): Cell[] {
  return cells.filter((_, k) => k % shard.count === shard.index - 1);
}
