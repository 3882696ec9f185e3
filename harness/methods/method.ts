/**
 * The interface of a quantization method.
 *
 * @module
 */
import type { LlamaModel } from "../models/model.ts";
import type { FormatSpec } from "../suite/types.ts";

/** What a method may use besides the model: the suite seed (calibration data comes later). */
export interface MethodContext {
  seed: number;
}

/** A post-training quantization algorithm. */
export interface Method {
  name: string;
  description: string;
  /** Option names the method accepts, with their defaults (validated by the suite loader). */
  options: Record<string, unknown>;
  /** Why this method cannot produce `format`, or undefined when it can. */
  unsupported(format: FormatSpec): string | undefined;
  /** Returns a new model whose linear weights are in `format`; the input is not modified. */
  quantize(
    model: LlamaModel,
    format: FormatSpec,
    options: Record<string, unknown>,
    ctx: MethodContext,
  ): Promise<LlamaModel>;
}
