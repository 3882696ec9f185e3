/**
 * Opening a cell: load its model, quantize it by the cell's method and format (calibrating on the
 * suite's datasets), and put it on the cell's backend behind an engine. The cell computation and
 * the reference cells of tasks both open cells this way, so a reference is built exactly as the
 * same cell in the suite would be.
 *
 * @module
 */
import type { Cell, Suite } from "../../core/suite_types.ts";
import type { LlamaModel } from "../../core/model.ts";
import type { Engine } from "../engines/engine.ts";
import { engineFor } from "../engines/registry.ts";
import { methods } from "../methods/registry.ts";
import { loadModel } from "../models/load.ts";

/** An opened cell. */
export interface OpenedCell {
  /** The quantized model (for the cell's bits per weight and format name). */
  model: LlamaModel;
  engine: Engine;
  /** Seconds the method took. */
  quantizeSeconds: number;
  /** Statistics the method recorded (e.g. calibration error). */
  quantizeStats: Record<string, number>;
}

/** The id of the engine {@linkcode openCell} gives a cell (a part of its results' cache keys). */
export function cellEngineId(cell: Cell): string {
  return engineFor(cell.backend).id(cell.backend);
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
  suite: Pick<Suite, "seed" | "datasets">,
  cell: Cell,
): Promise<OpenedCell> {
  const quantizeStats: Record<string, number> = {};
  const loaded = await loadModel(cell.model);
  const t0 = performance.now();
  const model = await methods.get(cell.method.method).quantize(
    loaded,
    cell.format,
    cell.method.options,
    {
      seed: suite.seed,
      datasets: suite.datasets,
      record: (stats) => Object.assign(quantizeStats, stats),
    },
  );
  const quantizeSeconds = (performance.now() - t0) / 1000;
  const engine = await engineFor(cell.backend).open(model, cell.backend, cell);
  return { model, engine, quantizeSeconds, quantizeStats };
}
