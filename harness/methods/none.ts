/**
 * The full-precision baseline: weights stay as loaded (a format's `activations:` and `kv_cache:`
 * still apply at run time).
 *
 * @module
 */
import type { Method } from "./method.ts";
import { elementFormats } from "../../kernels/formats/registry.ts";
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
  quantize(model, format, _options, ctx) {
    ctx.record?.({ quantize_peak_bytes: 0 });
    // The format may still quantize activations or the KV cache at run time.
    return Promise.resolve(withRuntime(model, format));
  },
};
