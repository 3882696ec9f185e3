/**
 * The interface of a scoring task.
 *
 * @module
 */
import type { ModelRunner } from "../../kernels/backend.ts";
import type { LlamaModel } from "../models/model.ts";
import type { DatasetSpec, TaskSpec } from "../suite/types.ts";
import type { Samples } from "../../reports/row.ts";

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
  model: LlamaModel;
  runner: ModelRunner;
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
  /** The reference model loaded on the cell's backend; loaded once per cell, on first use. */
  open(): Promise<{ model: LlamaModel; runner: ModelRunner }>;
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
  run(ctx: TaskContext): Promise<Metric[]>;
}
