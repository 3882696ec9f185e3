/**
 * The full-precision baseline: weights stay as loaded.
 *
 * @module
 */
import type { Method } from "./method.ts";
import { elementFormats } from "../../kernels/formats/registry.ts";

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
  quantize(model) {
    return Promise.resolve(model);
  },
};
