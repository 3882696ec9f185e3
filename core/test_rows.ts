/**
 * Small hand-built rows and results files for the report tests.
 *
 * @module
 */
import type { ResultRow, ResultsFile } from "./row.ts";

/** A plausible `ok` perplexity row, with fields replaced by `overrides`. */
export function makeRow(overrides: Partial<ResultRow> = {}): ResultRow {
  return {
    run_id: "20250101T000000Z",
    suite: "quickstart",
    model: "mini",
    method: "rtn",
    format: "w4g32",
    backend: "cpu",
    task: "perplexity",
    dataset: "wiki",
    metric: "ppl",
    value: 12.5,
    unit: "",
    higher_is_better: false,
    n: 20000,
    stderr: 0.25,
    ci_low: 12.01,
    ci_high: 12.99,
    bits_per_weight: 4.5,
    status: "ok",
    detail: "ppl protocol=gptq ctx=512 bos=false unit=token",
    ...overrides,
  };
}

/** A results file holding `rows`. */
export function makeFile(rows: ResultRow[], runId = "20250101T000000Z"): ResultsFile {
  return {
    schema_version: 1,
    meta: {
      run_id: runId,
      suite: "quickstart",
      suite_file: "/repo/suites/quickstart.yaml",
      suite_hash: "ab".repeat(32),
      git_sha: "0123456789abcdef0123456789abcdef01234567",
      deno_version: "2.9.6",
      quantbench_version: "0.1.0",
      os: "linux x86_64",
      adapter: null,
      started_at: "2025-01-01T00:00:00.000Z",
      finished_at: "2025-01-01T00:05:00.000Z",
      argv: ["bench", "suites/quickstart.yaml"],
    },
    rows,
  };
}
