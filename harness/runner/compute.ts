/**
 * The work of one cell: load the model, quantize it, load it onto the backend, run the tasks. Used
 * in process and inside worker threads alike.
 *
 * @module
 */
import type { Cell, Suite, TaskSpec } from "../suite/types.ts";
import type { CachedRow } from "./cache.ts";
import { methods } from "../methods/registry.ts";
import { tasks } from "../tasks/registry.ts";
import { backends } from "../../kernels/registry.ts";
import { loadModel } from "../models/load.ts";
import { linearBitsPerWeight, nativeFormatName } from "../models/bits.ts";
import { type ReferenceJob, ReferenceModels } from "../tasks/reference.ts";

/** Events a cell computation reports, in order. */
export type CellEvent =
  | { type: "begin"; task: number }
  | { type: "progress"; task: number; fraction: number }
  | { type: "rows"; task: number; rows: CachedRow[]; seconds: number }
  | { type: "failed"; task: number; message: string };

/** What a computation needs: plain data, so it can cross a worker boundary. */
export interface CellJob {
  suite: Suite;
  cell: Cell;
  /** Indices into `suite.tasks` still to compute. */
  taskIndices: number[];
  limit?: number;
  /** Resolved reference cells of tasks that compare against one, by task index. */
  references?: Record<number, ReferenceJob>;
  /** The result cache folder; tasks cache reference results beneath it. */
  cacheDir?: string;
}

/** Computes the tasks of one cell, reporting each result through `emit`. Never throws. */
export async function computeCell(job: CellJob, emit: (e: CellEvent) => void): Promise<void> {
  const { suite, cell } = job;
  let runner;
  let model;
  let quantizeSeconds = 0;
  const quantizeStats: Record<string, number> = {};
  let failure: string | undefined;
  try {
    const loaded = await loadModel(cell.model);
    const t0 = performance.now();
    model = await methods.get(cell.method.method).quantize(
      loaded,
      cell.format,
      cell.method.options,
      {
        seed: suite.seed,
        datasets: suite.datasets,
        record: (stats) => Object.assign(quantizeStats, stats),
      },
    );
    quantizeSeconds = (performance.now() - t0) / 1000;
    runner = await backends.get(cell.backend).load(model);
  } catch (e) {
    failure = errorText(e);
  }
  const references = runner && model
    ? new ReferenceModels(cell, suite.seed, { model, runner }, job.cacheDir)
    : undefined;
  for (const index of job.taskIndices) {
    const task = suite.tasks[index]!;
    emit({ type: "begin", task: index });
    if (failure !== undefined || !runner || !model) {
      emit({ type: "failed", task: index, message: failure ?? "model not loaded" });
      continue;
    }
    const started = performance.now();
    try {
      const dataset = task.dataset ? suite.datasets[task.dataset] : undefined;
      const metrics = await tasks.get(task.task).run({
        model,
        runner,
        task,
        dataset,
        datasets: suite.datasets,
        seed: suite.seed,
        limit: job.limit,
        progress: (fraction) => emit({ type: "progress", task: index, fraction }),
        reference: references?.context(job.references?.[index]),
      });
      const seconds = (performance.now() - started) / 1000;
      const bpw = linearBitsPerWeight(model);
      const rows: CachedRow[] = metrics.map((m) => ({
        ...rowKey(suite, cell, task),
        // `native` keeps a file's own weights: report what they are (e.g. q4_0).
        ...(cell.format.weights === "native" ? { format: nativeFormatName(model) } : {}),
        metric: m.metric,
        value: m.value,
        unit: m.unit,
        higher_is_better: m.higher_is_better,
        n: m.n,
        stderr: m.stderr,
        ci_low: m.ci_low,
        ci_high: m.ci_high,
        bits_per_weight: bpw,
        status: "ok",
        detail: m.detail,
        extra: { seconds, quantize_seconds: quantizeSeconds, ...quantizeStats },
        samples: m.samples,
      }));
      emit({ type: "rows", task: index, rows, seconds });
    } catch (e) {
      emit({ type: "failed", task: index, message: errorText(e) });
    }
  }
  await references?.dispose();
  runner?.dispose();
}

/** The identifying columns of a cell × task row. */
export function rowKey(suite: Suite, cell: Cell, task: TaskSpec) {
  return {
    suite: suite.name,
    model: cell.model.id,
    method: cell.method.id,
    format: cell.format.id,
    backend: cell.backend,
    task: task.id,
    dataset: task.dataset ?? "",
  };
}

/** An error's message, without a stack. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
