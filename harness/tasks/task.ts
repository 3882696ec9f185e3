/**
 * The interface of a scoring task.
 *
 * @module
 */
import type { DatasetSpec, TaskSpec } from "../../core/suite_types.ts";
import type { Samples } from "../../core/row.ts";
import { type Engine, type Need, unmetNeed } from "../engines/engine.ts";

/** One metric a task reports for a cell. */
export interface Metric {
  metric: string;
  value: number;
  unit: string;
  higher_is_better: boolean;
  n: number | null;
  stderr: number | null;
  ci_low: number | null;
  ci_high: number | null;
  detail: string;
  samples?: Samples;
}

/** Everything a task needs to score one cell. */
export interface TaskContext {
  /** What the task obtains model outputs from (and tokenizes with). */
  engine: Engine;
  task: TaskSpec;
  dataset: DatasetSpec | undefined;
  /** The suite's datasets by id (for options naming another one: long_context's `text`). */
  datasets?: Readonly<Record<string, DatasetSpec>>;
  seed: number;
  /** At most this many samples (windows, documents, questions), from `--limit`. */
  limit?: number;
  /** Reports progress within the task, from 0 to 1. */
  progress(fraction: number): void;
  /** The reference cell of a task with a `reference` option (kld, long_context), when resolved. */
  reference?: ReferenceContext;
}

/**
 * The reference cell a task compares against: by default the same model with `method: none` in
 * `f32` on the same backend. The runner resolves it (`reference.ts`) and opens it lazily.
 */
export interface ReferenceContext {
  /** `method/format` of the reference cell, for details. */
  id: string;
  /**
   * Identifies what the task computes on the reference cell: a hash of the reference cell (model
   * and tokenizer bytes, method and options, format, backend), the task and its options, the
   * dataset bytes, seed, `--limit` and the code version. Reference results are cached under it.
   */
  key: string;
  /** Whether the reference cell is the cell being scored (its results need no second model). */
  isSelf: boolean;
  /** The reference cell's engine on the cell's backend; opened once per cell, on first use. */
  open(): Promise<Engine>;
  /** Folder for cached reference results; absent, nothing is cached. */
  cacheDir?: string;
}

/** A scorer. */
export interface Task {
  name: string;
  description: string;
  /** Whether `dataset:` is required. */
  needsDataset: boolean;
  /** Option names the task accepts, with their defaults. */
  options: Record<string, unknown>;
  /** What the task needs of the engine; on an engine without it the cell is skipped. */
  needs: readonly Need[];
  run(ctx: TaskContext): Promise<Metric[]>;
}

/** What scoring a cell came to: metrics, or the reason the engine cannot serve the task. */
export type TaskOutcome = { metrics: Metric[] } | { skipped: string };

/**
 * Runs `task` on `ctx`, unless the engine lacks something the task needs.
 *
 * @example
 * ```ts
 * const outcome = await runTask(kld, ctx);
 * if ("skipped" in outcome) console.log(outcome.skipped);
 * ```
 */
export async function runTask(task: Task, ctx: TaskContext): Promise<TaskOutcome> {
  const why = unmetNeed(task.needs, ctx.engine.info());
  if (why !== undefined) return { skipped: `${task.name} ${why}` };
  return { metrics: await task.run(ctx) };
}
