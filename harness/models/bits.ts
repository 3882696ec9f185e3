/**
 * Storage cost of a model's weights.
 *
 * @module
 */
import { LINEAR_NAMES, type LlamaModel } from "../../core/model.ts";
import { matrixBits, storageName } from "../../kernels/formats/matrix.ts";

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

/**
 * The storage format of a model's linear weights as loaded (`f32`, `q4_0`, or a mixture such as
 * `q4_k+q6_k`, commonest first) — the format column of a file that is already quantized.
 */
export function nativeFormatName(model: LlamaModel): string {
  const counts = new Map<string, number>();
  for (const layer of model.weights.layers) {
    for (const name of LINEAR_NAMES) {
      const m = layer[name];
      const label = storageName(m);
      counts.set(label, (counts.get(label) ?? 0) + m.rows * m.cols);
    }
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([label]) => label).join("+");
}
