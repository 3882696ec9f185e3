/**
 * The report schema shared by every writer and by `compare` (see DESIGN.md, "Report schema").
 *
 * @module
 */

/** The required CSV columns, in order. */
export const COLUMNS = [
  "run_id",
  "suite",
  "model",
  "method",
  "format",
  "backend",
  "task",
  "dataset",
  "metric",
  "value",
  "unit",
  "higher_is_better",
  "n",
  "stderr",
  "ci_low",
  "ci_high",
  "bits_per_weight",
  "status",
  "detail",
] as const;

/** Row status. */
export type Status = "ok" | "failed" | "skipped";

/** Per-sample values behind a row (per window, per document, per question), for paired statistics. */
export interface Samples {
  /** What one value is, e.g. `window_nll` or `correct`. */
  kind: string;
  values: number[];
  /** Stable ids pairing samples across runs (defaults to the index). */
  ids?: string[];
  /** Weights (e.g. scored tokens per window), same length as `values`. */
  weights?: number[];
}

/** One cell × metric. */
export interface ResultRow {
  run_id: string;
  suite: string;
  model: string;
  method: string;
  format: string;
  backend: string;
  task: string;
  dataset: string;
  metric: string;
  value: number | null;
  unit: string;
  higher_is_better: boolean | null;
  n: number | null;
  stderr: number | null;
  ci_low: number | null;
  ci_high: number | null;
  bits_per_weight: number | null;
  status: Status;
  detail: string;
  /** Extra columns, written after the required ones (e.g. `seconds`). */
  extra?: Record<string, string | number | boolean | null>;
  /** Only in results.json. */
  samples?: Samples;
}

/** Run metadata in results.json. */
export interface RunMeta {
  run_id: string;
  suite: string;
  suite_file: string;
  suite_hash: string;
  git_sha: string | null;
  deno_version: string;
  quantbench_version: string;
  os: string;
  adapter: Record<string, string> | null;
  started_at: string;
  finished_at: string;
  argv: string[];
}

/** The whole results.json document. */
export interface ResultsFile {
  schema_version: 1;
  meta: RunMeta;
  rows: ResultRow[];
}
