/**
 * The full-precision baseline: weights stay as loaded (a format's `activations:` and `kv_cache:`
 * still apply at run time). A streamed model's layers are all read here: the float model is the
 * result, so its size is the method's peak.
 *
 * @module
 */
import type { LayerWeights, LlamaModel } from "../../core/model.ts";
import type { Method } from "./method.ts";
import { elementFormats } from "../../kernels/formats/registry.ts";
import { weightBytes } from "./calibration.ts";
import { withRuntime } from "./runtime.ts";

/** Keeps the model unquantized; only float weight formats make sense with it. */
export const none: Method = {
  name: "none",
  description: "full-precision baseline (no quantization)",
  options: {},
  unsupported(format) {
    const element = elementFormats.get(format.weights);
    return element.kind === "float" ? undefined : `method "none" does not quantize; format ` +
      `"${format.id}" (${format.weights}) needs a quantization method such as rtn`;
  },
  async quantize(model, format, _options, ctx) {
    const whole = await allLayers(model);
    ctx.record?.({ quantize_peak_bytes: weightBytes(whole.weights) });
    // The format may still quantize activations or the KV cache at run time.
    return withRuntime(whole, format);
  },
};

/** `model` with every layer in memory (read from the file when streamed). */
async function allLayers(model: LlamaModel): Promise<LlamaModel> {
  const { stream, ...rest } = model;
  if (stream === undefined) return model;
  const layers: LayerWeights[] = [];
  for (let i = 0; i < stream.count; i++) layers.push(await stream.read(i));
  return { ...rest, weights: { ...model.weights, layers } };
}
