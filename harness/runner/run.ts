/**
 * Runs a suite: expands cells, reuses cached cell × task results, computes the rest on a pool of
 * worker threads (one cell per worker at a time), and returns the rows in suite order with run
 * metadata. Each finished cell × task is cached at once, so a killed run resumes where it stopped.
 *
 * @module
 */
import type { Cell, Suite } from "../../core/suite_types.ts";
import type { ResultRow, ResultsFile } from "../../core/row.ts";
import { expandCells } from "../suite/expand.ts";
import { backendUnavailable } from "../engines/registry.ts";
import { type CachedRow, ResultCache } from "./cache.ts";
import { codeVersion, hashPath } from "./fingerprint.ts";
import { Progress } from "./progress.ts";
import { gitSha } from "./git.ts";
import { type CellEvent, type CellJob, errorText, rowKey } from "./compute.ts";
import { referenceCell, type ReferenceJob, resolveReference } from "../tasks/reference.ts";
import { perplexityDataset } from "../tasks/long_context.ts";
import { cellEngineId } from "./open_cell.ts";

/** How to run. */
export interface RunOptions {
  runId: string;
  cacheDir: string;
  filter?: string;
  /** Replaces the suite's backends. */
  backend?: string;
  /** Cells to run (already planned and sharded); default: all planned cells. */
  cells?: Cell[];
  limit?: number;
  fresh?: boolean;
  quiet?: boolean;
  /** Cells computed at once, each on a worker thread (default: one per CPU core, at most 2). */
  jobs?: number;
  argv?: string[];
}

/** The cells a run would compute, after `--backend` and `--filter`. */
export function planCells(suite: Suite, options: Pick<RunOptions, "backend" | "filter">): Cell[] {
  const s = options.backend ? { ...suite, backends: [options.backend] } : suite;
  return expandCells(s, { filter: options.filter });
}

/** Runs the suite and returns the complete results. */
export async function runSuite(suite: Suite, options: RunOptions): Promise<ResultsFile> {
  const startedAt = new Date().toISOString();
  const cells = options.cells ?? planCells(suite, options);
  const cache = new ResultCache(options.cacheDir);
  const progress = new Progress(cells.length * suite.tasks.length, { quiet: options.quiet });
  const slots: CachedRow[][][] = cells.map(() => suite.tasks.map(() => []));
  const keyer = new CellKeyer(suite, options.limit ?? null);
  const jobs: { cellIndex: number; job: CellJob; keys: string[] }[] = [];

  for (const [c, cell] of cells.entries()) {
    const skip = cell.skipReason ?? await backendUnavailable(cell.backend);
    const pending: number[] = [];
    const keys: string[] = [];
    const references: Record<number, ReferenceJob> = {};
    for (const [t, task] of suite.tasks.entries()) {
      const label = `${cell.id} ${task.id}${task.dataset ? `(${task.dataset})` : ""}`;
      const base = rowKey(suite, cell, task);
      if (skip) {
        slots[c]![t] = [statusRow(base, "skipped", skip)];
        progress.begin(label);
        progress.end(`skipped: ${skip}`);
        continue;
      }
      let key: string;
      try {
        key = await keyer.key(cell, t);
        // A task comparing against a reference cell gets it resolved, with a cache key of its own.
        if (task.options.reference !== undefined) {
          const ref = resolveReference(suite, task.options.reference);
          references[t] = { ...ref, key: await keyer.key(referenceCell(cell, ref), t) };
          // The cell's result depends on the reference cell too (its method options may change).
          key = ResultCache.key({ cell: key, reference: references[t].key });
        }
      } catch (e) {
        slots[c]![t] = [statusRow(base, "failed", errorText(e))];
        progress.begin(label);
        progress.end(`failed: ${errorText(e)}`);
        continue;
      }
      keys[t] = key;
      const cached = options.fresh ? undefined : await cache.get(key);
      if (cached) {
        slots[c]![t] = cached;
        progress.begin(label);
        progress.end("cached");
      } else {
        pending.push(t);
      }
    }
    if (pending.length > 0) {
      jobs.push({
        cellIndex: c,
        job: {
          suite,
          cell,
          taskIndices: pending,
          limit: options.limit,
          references,
          cacheDir: options.cacheDir,
        },
        keys,
      });
    }
  }

  const onEvent = async (cellIndex: number, keys: string[], e: CellEvent) => {
    const cell = cells[cellIndex]!;
    const task = suite.tasks[e.task]!;
    const label = `${cell.id} ${task.id}${task.dataset ? `(${task.dataset})` : ""}`;
    if (e.type === "begin") progress.begin(label);
    else if (e.type === "progress") progress.update(e.fraction, label);
    else if (e.type === "rows") {
      slots[cellIndex]![e.task] = e.rows;
      await cache.put(keys[e.task]!, e.rows);
      const head = e.rows[0];
      const value = head?.value;
      progress.end(
        `${head?.metric}=${typeof value === "number" ? value.toPrecision(5) : value} ` +
          `(${e.seconds.toFixed(1)} s)`,
        label,
      );
    } else if (e.type === "skipped") {
      // The engine cannot serve the task: that holds for this key, so it is cached like a result.
      const rows = [statusRow(rowKey(suite, cell, task), "skipped", e.reason)];
      slots[cellIndex]![e.task] = rows;
      await cache.put(keys[e.task]!, rows);
      progress.end(`skipped: ${e.reason}`, label);
    } else {
      slots[cellIndex]![e.task] = [statusRow(rowKey(suite, cell, task), "failed", e.message)];
      progress.end(`failed: ${e.message}`, label);
    }
  };

  // Cells always run on worker threads, so progress and cache writes on this thread go on while
  // a worker computes (the CPU kernels never yield).
  const workers = Math.max(
    1,
    Math.min(options.jobs ?? Math.min(2, navigator.hardwareConcurrency), jobs.length),
  );
  if (jobs.length > 0) await runPool(jobs, workers, onEvent);
  progress.finish();

  const rows: ResultRow[] = slots.flat(2).map((r) => ({ run_id: options.runId, ...r }));
  return {
    schema_version: 1,
    meta: {
      run_id: options.runId,
      suite: suite.name,
      suite_file: suite.file,
      suite_hash: suite.hash,
      git_sha: await gitSha(),
      deno_version: Deno.version.deno,
      quantbench_version: await codeVersion(),
      os: `${Deno.build.os}-${Deno.build.arch}`,
      adapter: null,
      started_at: startedAt,
      finished_at: new Date().toISOString(),
      argv: options.argv ?? [],
    },
    rows,
  };
}

/** Runs jobs on `size` worker threads, delivering each worker's events in order. */
async function runPool(
  jobs: { cellIndex: number; job: CellJob; keys: string[] }[],
  size: number,
  onEvent: (cellIndex: number, keys: string[], e: CellEvent) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async () => {
    const worker = new Worker(new URL("./cell_worker.ts", import.meta.url), { type: "module" });
    try {
      while (next < jobs.length) {
        const { cellIndex, job, keys } = jobs[next++]!;
        // Events are handled one after another so cache writes finish before `done` resolves.
        let chain = Promise.resolve();
        await new Promise<void>((resolve, reject) => {
          worker.onmessage = (m: MessageEvent<CellEvent | { type: "done" }>) => {
            const data = m.data;
            if (data.type === "done") chain.then(resolve, reject);
            else chain = chain.then(() => onEvent(cellIndex, keys, data));
          };
          worker.onerror = (e) => {
            e.preventDefault();
            reject(new Error(`Worker for ${job.cell.id} crashed: ${e.message}`));
          };
          worker.postMessage(job);
        });
      }
    } finally {
      worker.terminate();
    }
  };
  await Promise.all(Array.from({ length: size }, lane));
}

/** Cache keys of cell × task computations; file hashes are computed once per path. */
class CellKeyer {
  readonly #hashes = new Map<string, Promise<string>>();
  constructor(readonly suite: Suite, readonly limit: number | null) {}

  #hash(path: string): Promise<string> {
    let h = this.#hashes.get(path);
    if (!h) this.#hashes.set(path, h = hashPath(path));
    return h;
  }

  async key(cell: Cell, taskIndex: number): Promise<string> {
    const task = this.suite.tasks[taskIndex]!;
    const dataset = task.dataset ? this.suite.datasets[task.dataset] : undefined;
    const calibrationId = (cell.method.options.calibration as { dataset?: unknown } | undefined)
      ?.dataset;
    const calibration = typeof calibrationId === "string"
      ? this.suite.datasets[calibrationId]
      : undefined;
    return ResultCache.key({
      code: await codeVersion(),
      seed: this.suite.seed,
      limit: this.limit,
      model: await this.#hash(cell.model.path),
      tokenizer: cell.model.tokenizer ? await this.#hash(cell.model.tokenizer) : null,
      method: { method: cell.method.method, options: cell.method.options },
      // Only with calibration sets (absent, the key is as it always was): the cached rows carry
      // the set's method id and fields, which a plain method with the same options must not get.
      calibration_set: cell.method.calibrationSet,
      format: { ...cell.format, id: undefined },
      backend: cell.backend,
      engine: cellEngineId(cell, this.suite),
      task: { task: task.task, options: task.options },
      dataset: dataset
        ? {
          hash: await this.#hash(dataset.path),
          maxChars: dataset.maxChars,
          skipChars: dataset.skipChars ?? 0,
          separator: dataset.separator ?? null,
        }
        : null,
      // long_context's perplexity text, which need not be the task's dataset.
      text: await (async () => {
        if (task.task !== "long_context") return null;
        const text = perplexityDataset(this.suite.datasets, task.options, dataset);
        return text
          ? {
            hash: await this.#hash(text.path),
            maxChars: text.maxChars,
            skipChars: text.skipChars ?? 0,
          }
          : null;
      })(),
      // The text a method calibrates on (its id alone would let an edited file hit the cache).
      calibration: calibration
        ? {
          hash: await this.#hash(calibration.path),
          maxChars: calibration.maxChars,
          skipChars: calibration.skipChars ?? 0,
        }
        : null,
    });
  }
}

function statusRow(
  base: ReturnType<typeof rowKey>,
  status: "failed" | "skipped",
  detail: string,
): CachedRow {
  return {
    ...base,
    metric: "",
    value: null,
    unit: "",
    higher_is_better: null,
    n: null,
    stderr: null,
    ci_low: null,
    ci_high: null,
    bits_per_weight: null,
    status,
    detail,
  };
}
