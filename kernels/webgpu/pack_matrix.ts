/**
 * Packs any weight matrix into the WebGPU backend's layout: dense and integer matrices by
 * `pack.ts`, block-coded ones per their codec by `pack_coded.ts`.
 *
 * @module
 */
import type { Matrix } from "../../core/model.ts";
import { packDense, type PackedMatrix, packInt } from "./pack.ts";
import { packCoded } from "./pack_coded.ts";

/** Packs any matrix: dense and integer ones natively, coded ones per their codec. */
export function packMatrix(m: Matrix, maxBinding: number): PackedMatrix {
  switch (m.kind) {
    case "dense":
      return packDense(m.rows, m.cols, m.data, maxBinding);
    case "int":
      return packInt(m, maxBinding);
    case "coded":
      return packCoded(m, maxBinding);
  }
}
