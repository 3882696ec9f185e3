/**
 * The work of one cell: open it (`open_cell.ts`: load, quantize, put on the backend behind an
 * engine), then run the tasks the engine can serve, skipping those it cannot. Used
 * in process and inside worker threads alike.
 *
 * @module
 */
import type { Cell, Suite, TaskSpec } from "../../core/suite_types.ts";
import type { CachedRow } from "./cache.ts";
import { tasks } from "../tasks/registry.ts";
import { runTask } from "../tasks/task.ts";
import { linearBitsPerWeight, nativeFormatName } from "../models/bits.ts";
import { modelBytes } from "../engines/model_bytes.ts";
import type { LlamaModel } from "../../core/model.ts";
import { type ReferenceJob, ReferenceModels } from "../tasks/reference.ts";
import { openCell, type OpenedCell } from "./open_cell.ts";

/** Events a cell computation reports, in order. */
export type CellEvent =
  | { type: "begin"; task: number }
  | { type: "progress"; task: number; fraction: number }
  | { type: "rows"; task: number; rows: CachedRow[]; seconds: number }
  | { type: "skipped"; task: number; reason: string }
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
  let opened: OpenedCell | undefined;
  let failure: string | undefined;
  try {
    opened = await openCell(suite, cell, job.cacheDir);
  } catch (e) {
    failure = errorText(e);
  }
  const references = opened
    ? new ReferenceModels(suite, cell, opened.engine, job.cacheDir)
    : undefined;
  for (const index of job.taskIndices) {
    const task = suite.tasks[index]!;
    emit({ type: "begin", task: index });
    if (failure !== undefined || !opened) {
      emit({ type: "failed", task: index, message: failure ?? "model not loaded" });
      continue;
    }
    const { model, engine, quantizeSeconds, quantizeStats } = opened;
    const started = performance.now();
    try {
      const dataset = task.dataset ? suite.datasets[task.dataset] : undefined;
      const outcome = await runTask(tasks.get(task.task), {
        engine,
        task,
        dataset,
        datasets: suite.datasets,
        seed: suite.seed,
        limit: job.limit,
        progress: (fraction) => emit({ type: "progress", task: index, fraction }),
        reference: references?.context(job.references?.[index]),
      });
      if ("skipped" in outcome) {
        emit({ type: "skipped", task: index, reason: outcome.skipped });
        continue;
      }
      const metrics = outcome.metrics;
      const seconds = (performance.now() - started) / 1000;
      // A served model's weights are not here (bits per weight unknown).
      const bpw = model.weights.layers.length > 0 ? linearBitsPerWeight(model) : null;
      const rows: CachedRow[] = metrics.map((m) => ({
        ...rowKey(suite, cell, task),
        // `native` keeps a file's own weights: report what they are (e.g. q4_0).
        // A native format with another id (e.g. run-time settings) keeps its id beside it.
        ...(cell.format.weights === "native"
          ? {
            format: nativeFormatName(model) +
              (cell.format.id === "native" ? "" : ` (${cell.format.id})`),
          }
          : {}),
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
        detail: withFallback(m.detail, engine.info().fallbacks),
        extra: {
          seconds,
          quantize_seconds: quantizeSeconds,
          ...quantizeStats,
          ...engineIdentity(engine.info()),
          ...(bpw === null ? {} : memoryFacts(model)),
          ...kvCacheFacts(engine.info()),
          ...calibrationSetFields(cell),
        },
        samples: m.samples,
      }));
      emit({ type: "rows", task: index, rows, seconds });
    } catch (e) {
      emit({ type: "failed", task: index, message: errorText(e) });
    }
  }
  await references?.dispose();
  opened?.engine.dispose();
}

/**
 * What `recommend`'s memory model needs about a cell, for a row's `extra`: the architecture
 * (`arch_layers`, `arch_kv_heads`, `arch_head_dim`, `arch_dim`, `arch_hidden_dim`, `arch_vocab`,
 * `arch_max_seq_len`), the bytes of the weights as stored (`weight_bytes`: codes, scales and
 * codebooks, see {@linkcode modelBytes}), the bytes quantbench holds for them (`weight_bytes_held`,
 * see {@linkcode heldBytes}) and the KV-cache format the cell runs (`kv_format`,
 * `kv_group`, `kv_residual`; `f32` when the cache is not quantized).
 */
export function memoryFacts(model: LlamaModel): Record<string, string | number> {
  const c = model.config;
  const kv = model.runtime?.kvCache;
  return {
    weight_bytes: modelBytes(model).total,
    weight_bytes_held: heldBytes(model.weights),
    arch_layers: c.nLayers,
    arch_kv_heads: c.nKvHeads,
    arch_head_dim: c.headDim,
    arch_dim: c.dim,
    arch_hidden_dim: c.hiddenDim,
    arch_vocab: c.vocabSize,
    arch_max_seq_len: c.maxSeqLen,
    kv_format: kv?.format ?? "f32",
    kv_group: kv?.group ?? 0,
    kv_residual: kv?.residual ?? 0,
  };
}

/**
 * The KV cache the engine allocated, for a row's `extra`: its buffers' bytes over all layers
 * (`kv_cache_bytes`: a quantized cache's codes, sides and float window or copy, as the backend
 * keeps them) at `kv_cache_positions` positions; nothing where the engine does not say.
 */
export function kvCacheFacts(
  info: { kvCacheBytes?: number; maxSeqLen: number },
): Record<string, number> {
  if (info.kvCacheBytes === undefined) return {};
  return { kv_cache_bytes: info.kvCacheBytes, kv_cache_positions: info.maxSeqLen };
}

/**
 * Bytes of the distinct typed-array buffers reachable from `value` (each buffer counted once):
 * what the runtime actually holds for a model's weights.
 */
export function heldBytes(value: unknown): number {
  const buffers = new Set<ArrayBufferLike>();
  const seen = new Set<object>();
  let total = 0;
  const walk = (v: unknown) => {
    if (v === null || typeof v !== "object" || seen.has(v)) return;
    seen.add(v);
    if (ArrayBuffer.isView(v)) {
      if (!buffers.has(v.buffer)) {
        buffers.add(v.buffer);
        total += v.buffer.byteLength;
      }
      return;
    }
    for (const x of Array.isArray(v) ? v : Object.values(v)) walk(x);
  };
  walk(value);
  return total;
}

/**
 * A calibration-sensitivity cell's fields for a row's `extra`: the method entry it is one set of
 * (`calibration_of`) and its calibration dataset (`calibration`); nothing for any other cell.
 */
export function calibrationSetFields(cell: Cell): Record<string, string> {
  const set = cell.method.calibrationSet;
  return set ? { calibration_of: set.of, calibration: set.dataset } : {};
}

/**
 * The identity of an engine other than the in-process one (llama.cpp's versions, build, threads,
 * KV type …) for a row's `extra`: `engine` (its id) and `engine_<field>`; nothing for in-process
 * engines, whose rows stay as they were.
 */
export function engineIdentity(
  info: { id: string; details?: Record<string, string | number | boolean> },
): Record<string, string | number | boolean> {
  if (info.id.startsWith("in_process/")) return {};
  const out: Record<string, string | number | boolean> = { engine: info.id };
  for (const [k, v] of Object.entries(info.details ?? {})) out[`engine_${k}`] = v;
  return out;
}

/**
 * A row's detail with `fallback=f32(<formats>)` appended when the backend runs some weights
 * decoded to f32 because it has no kernel for their format — so such a row never passes for one
 * measured in the format itself.
 */
export function withFallback(detail: string, formats: readonly string[]): string {
  if (formats.length === 0) return detail;
  const note = `fallback=f32(${formats.join(",")})`;
  return detail === "" ? note : `${detail} ${note}`;
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
