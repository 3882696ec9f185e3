/**
 * Storage cost of a model's weights.
 *
 * @module
 */
import { LINEAR_NAMES, type LlamaModel } from "./model.ts";
import { matrixBits } from "../../kernels/formats/matrix.ts";

/**
 * Average bits per weight over the transformer blocks' linear layers — the weights PTQ methods
 * quantize, and the figure GPTQ/AWQ tables quote (int4 g128 → 4.125).
 */
export function linearBitsPerWeight(model: LlamaModel): number {
  let bits = 0;
  let count = 0;
  for (const layer of model.weights.layers) {
    for (const name of LINEAR_NAMES) {
      const m = layer[name];
      bits += matrixBits(m);
      count += m.rows * m.cols;
    }
  }
  return bits / count;
}
