/**
 * Round-to-nearest: every linear weight of every block is quantized independently, group by group,
 * with no calibration. The token embedding stays in float32 (it is a table lookup) and so does the
 * classifier, as weight-only PTQ methods (GPTQ, AWQ) leave `lm_head` unquantized by default.
 *
 * @module
 */
import type { Method } from "./method.ts";
import type { LlamaModel, Matrix } from "../models/model.ts";
import { LINEAR_NAMES } from "../models/model.ts";
import { elementFormats } from "../../kernels/formats/registry.ts";
import { quantizeInt } from "../../kernels/formats/int.ts";
import type { FormatSpec } from "../suite/types.ts";

/** Quantizes one dense matrix into the integer format of `format`. */
export function quantizeMatrix(m: Matrix, format: FormatSpec): Matrix {
  if (m.kind !== "dense") throw new Error(`Cannot re-quantize a ${m.kind} matrix`);
  const element = elementFormats.get(format.weights);
  return quantizeInt(m.data, m.rows, m.cols, {
    bits: element.bits,
    group: format.group,
    symmetric: format.symmetric,
  });
}

/** Round-to-nearest quantization of the transformer blocks' linear weights. */
export const rtn: Method = {
  name: "rtn",
  description: "round-to-nearest, per channel or per group",
  options: {},
  unsupported(format) {
    const element = elementFormats.get(format.weights);
    return element.kind === "int"
      ? undefined
      : `method "rtn" quantizes to integer formats; format "${format.id}" is ${format.weights}`;
  },
  quantize(model: LlamaModel, format: FormatSpec): Promise<LlamaModel> {
    const layers = model.weights.layers.map((layer) => {
      const out = { ...layer };
      for (const name of LINEAR_NAMES) out[name] = quantizeMatrix(layer[name], format);
      return out;
    });
    return Promise.resolve({ ...model, weights: { ...model.weights, layers } });
  },
};
