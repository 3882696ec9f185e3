/**
 * Opening a cell: load its model (streamed: the layers are read as the method reaches them),
 * quantize it by the cell's method and format (calibrating on the suite's datasets), and put it
 * on the cell's backend behind an engine. The cell computation and the reference cells of tasks
 * both open cells this way, so a reference is built exactly as the same cell in the suite would
 * be.
 *
 * @module
 */
import type { Cell, Suite } from "../../core/suite_types.ts";
import type { LlamaModel } from "../../core/model.ts";
import type { Engine } from "../engines/engine.ts";
import { engineFor } from "../engines/registry.ts";
import { methods } from "../methods/registry.ts";
import { loadModel } from "../models/load.ts";
import { loadServedModel } from "../engines/served_model.ts";

/** Thrown when a method leaves layers of a streamed model unread. */
export class StreamedModelError extends Error {
  override name = "StreamedModelError";
}

/** An opened cell. */
export interface OpenedCell {
  /** The quantized model (for the cell's bits per weight and format name). */
  model: LlamaModel;
  engine: Engine;
  /** Seconds the method took (reading a streamed model's layers included). */
  quantizeSeconds: number;
  /** Statistics the method recorded (e.g. calibration error). */
  quantizeStats: Record<string, number>;
}

/** The id of the engine {@linkcode openCell} gives a cell (a part of its results' cache keys). */
export function cellEngineId(cell: Cell, suite?: Pick<Suite, "engines">): string {
  const spec = suite?.engines?.[cell.backend];
  return engineFor(cell.backend, spec).id(cell.backend, spec);
}

/**
 * Opens `cell` of a suite (its seed and datasets).
 *
 * @example
 * ```ts
 * const { engine } = await openCell(suite, cell);
 * const [scored] = await engine.loglikelihood([{ context: "Once upon", continuation: " a time" }]);
 * engine.dispose();
 * ```
 */
export async function openCell(
  suite: Pick<Suite, "seed" | "datasets" | "engines">,
  cell: Cell,
  cacheDir?: string,
): Promise<OpenedCell> {
  const spec = suite.engines?.[cell.backend];
  const factory = engineFor(cell.backend, spec);
  if (factory.model === "served") {
    // The model runs elsewhere: its tokenizer and configuration only, nothing quantized here.
    const model = await loadServedModel(cell.model);
    const engine = await factory.open(model, cell.backend, { spec, cacheDir, cell });
    return { model, engine, quantizeSeconds: 0, quantizeStats: {} };
  }
  const { model, quantizeSeconds, quantizeStats } = await quantizeCell(suite, cell);
  const engine = await factory.open(model, cell.backend, { spec, cacheDir, cell });
  return { model, engine, quantizeSeconds, quantizeStats };
}

/**
 * Loads `cell`'s model and quantizes it by the cell's method and format, as {@linkcode openCell}
 * does before it opens an engine (`deno task quantize` writes this model).
 */
export async function quantizeCell(
  suite: Pick<Suite, "seed" | "datasets">,
  cell: Cell,
): Promise<Omit<OpenedCell, "engine">> {
  const quantizeStats: Record<string, number> = {};
  // Streamed: the method reads each layer when it reaches it, so the float model is never whole
  // in memory unless the method keeps it (none).
  const loaded = await loadModel(cell.model, { stream: true });
  const t0 = performance.now();
  let quantized: LlamaModel;
  try {
    quantized = await methods.get(cell.method.method).quantize(
      loaded,
      cell.format,
      cell.method.options,
      {
        seed: suite.seed,
        datasets: suite.datasets,
        record: (stats) => Object.assign(quantizeStats, stats),
      },
    );
  } finally {
    loaded.stream?.close();
  }
  const quantizeSeconds = (performance.now() - t0) / 1000;
  const { stream: _, ...model } = quantized;
  if (model.weights.layers.length !== model.config.nLayers) {
    throw new StreamedModelError(
      `Method "${cell.method.method}" returned ${model.weights.layers.length} of the ` +
        `${model.config.nLayers} layers of streamed model "${cell.model.id}"`,
    );
  }
  return { model, quantizeSeconds, quantizeStats };
}
