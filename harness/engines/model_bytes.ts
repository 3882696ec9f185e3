/**
 * How many bytes a model's weights take, and how many one decoded token reads.
 *
 * @module
 */
import type { LlamaModel, Matrix } from "../../core/model.ts";
import { matrixBits } from "../../kernels/formats/matrix.ts";

/**
 * Bytes of a model's weights: all of them (`total`), and those one decoded token reads
 * (`perToken`: every linear weight with its scales, the classifier, the norms and one embedding
 * row).
 */
export function modelBytes(model: LlamaModel): { total: number; perToken: number } {
  const w = model.weights;
  const bytes = (m: Matrix) => matrixBits(m) / 8;
  let layers = 0;
  for (const l of w.layers) {
    layers += bytes(l.wq) + bytes(l.wk) + bytes(l.wv) + bytes(l.wo) + bytes(l.w1) + bytes(l.w2) +
      bytes(l.w3);
    for (const v of [l.attnNorm, l.ffnNorm, l.bq, l.bk, l.bv, l.bo, l.qNorm, l.kNorm]) {
      layers += v?.byteLength ?? 0;
    }
  }
  const head = bytes(w.output) + w.finalNorm.byteLength;
  const embedding = w.tokenEmbedding.byteLength;
  const total = layers + head + (w.tiedEmbeddings && w.output.kind === "dense" ? 0 : embedding);
  return { total, perToken: layers + head + model.config.dim * 4 };
}
