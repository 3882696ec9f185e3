/**
 * The interface of a quantization method.
 *
 * @module
 */
import type { LlamaModel } from "../../core/model.ts";
import type { DatasetSpec, FormatSpec } from "../../core/suite_types.ts";

/** What a method may use besides the model. */
export interface MethodContext {
  /** The suite seed (calibration windows are drawn with it). */
  seed: number;
  /** The suite's datasets by id, for calibration (`calibration: { dataset }`). */
  datasets?: Record<string, DatasetSpec>;
  /**
   * Receives figures about the quantization run (e.g. `quantize_peak_bytes`) that the runner
   * adds to every row of the cell as extra columns.
   */
  record?(stats: Record<string, number>): void;
}

/** A post-training quantization algorithm. */
export interface Method {
  name: string;
  description: string;
  /** Option names the method accepts, with their defaults (validated by the suite loader). */
  options: Record<string, unknown>;
  /**
   * The only tasks this method's models mean something for (absent: every task); the suite
   * loader refuses a suite that runs it with any other (`random_codes`: throughput only).
   */
  tasks?: readonly string[];
  /** Why this method cannot produce `format`, or undefined when it can. */
  unsupported(format: FormatSpec): string | undefined;
  /**
   * Throws (a named error saying which value and what it takes) for option values the method
   * cannot run with, once their types are checked: the suite loader calls it, so a bad value is
   * reported at its suite line before anything runs.
   */
  checkOptions?(options: Record<string, unknown>): void;
  /**
   * Returns a new model whose linear weights are in `format`; the input is not modified. A
   * streamed input's layers (`LlamaModel.stream`) are read as the method reaches them; the result
   * holds all of its layers.
   */
  quantize(
    model: LlamaModel,
    format: FormatSpec,
    options: Record<string, unknown>,
    ctx: MethodContext,
  ): Promise<LlamaModel>;
}
