/**
 * Round-to-nearest: every linear weight of every block is quantized independently, with no
 * calibration, into any integer or coded format — for a coded format RTN is its codec's own
 * encoder (llama.cpp's reference quantizers for ggml blocks, the OCP recipe for MX, vLLM's for
 * NVFP4). The token embedding stays in float32 (it is a table lookup) and so does the classifier,
 * as weight-only PTQ methods (GPTQ, AWQ) leave `lm_head` unquantized by default.
 *
 * @module
 */
import type { Method } from "./method.ts";
import type { LlamaModel, Matrix } from "../models/model.ts";
import { LINEAR_NAMES } from "../models/model.ts";
import { elementFormats, FormatSettingsError } from "../../kernels/formats/registry.ts";
import type { FormatSpec } from "../suite/types.ts";

/** Why `rtn` cannot produce `format`, or undefined when it can. */
function unsupported(format: FormatSpec): string | undefined {
  const element = elementFormats.get(format.weights);
  if (element.kind === "float") {
    return `method "rtn" quantizes; format "${format.id}" is ${format.weights}, the ` +
      `unquantized baseline (use method none)`;
  }
  return element.unsupported(format);
}

/** Quantizes one dense matrix into the integer or coded format of `format`. */
export function quantizeMatrix(m: Matrix, format: FormatSpec): Matrix {
  if (m.kind !== "dense") throw new Error(`Cannot re-quantize a ${m.kind} matrix`);
  const element = elementFormats.get(format.weights);
  if (element.kind === "float") throw new FormatSettingsError(unsupported(format));
  return element.quantize(format, m);
}

/** Round-to-nearest quantization of the transformer blocks' linear weights. */
export const rtn: Method = {
  name: "rtn",
  description: "round-to-nearest into any integer or coded format (the codec's own encoder)",
  options: {},
  unsupported,
  quantize(model: LlamaModel, format: FormatSpec): Promise<LlamaModel> {
    const layers = model.weights.layers.map((layer) => {
      const out = { ...layer };
      for (const name of LINEAR_NAMES) out[name] = quantizeMatrix(layer[name], format);
      return out;
    });
    return Promise.resolve({ ...model, weights: { ...model.weights, layers } });
  },
};
