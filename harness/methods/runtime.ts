/**
 * Attaching a format's run-time quantization (`activations:`, `kv_cache:`) to a quantized model;
 * every method ends with it, so the backend applies what the format asks for whatever the method.
 *
 * @module
 */
import type { LlamaModel } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { runtimeQuantization } from "../../kernels/formats/runtime_quant.ts";

/** `model` with the run-time quantization `format` asks for (the model itself when none). */
export function withRuntime(model: LlamaModel, format: FormatSpec): LlamaModel {
  const runtime = runtimeQuantization(format);
  return runtime === undefined ? model : { ...model, runtime };
}
