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
  seed: number;
  /** At most this many samples (windows, documents, questions), from `--limit`. */
  limit?: number;
  /** Reports progress within the task, from 0 to 1. */
  progress(fraction: number): void;
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
