/**
 * Packs any weight matrix into the WebGPU backend's layout: dense ones by `pack.ts`, quantized
 * ones by their format's GPU plan (`pack_quantized.ts`).
 *
 * @module
 */
import type { Matrix } from "../../core/model.ts";
import { packDense, type PackedMatrix } from "./pack.ts";
import { packQuantized } from "./pack_quantized.ts";

/** Packs any matrix: dense ones as f32 rows, quantized ones per their format. */
export function packMatrix(m: Matrix, maxBinding: number): PackedMatrix {
  return m.kind === "dense"
    ? packDense(m.rows, m.cols, m.data, maxBinding)
    : packQuantized(m, maxBinding);
}
