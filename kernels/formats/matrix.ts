/**
 * Format-independent access to weight matrices: decode a row, count storage bits.
 *
 * @module
 */
import type { Matrix } from "../../core/model.ts";
import { dequantizeRow, intMatrixBits } from "./int.ts";
import { rowCodecs } from "./codecs.ts";

/** Decodes row `r` of any matrix into `out` (length `cols`). */
export function decodeRow(m: Matrix, r: number, out: Float32Array): void {
  switch (m.kind) {
    case "dense":
      out.set(m.data.subarray(r * m.cols, (r + 1) * m.cols));
      return;
    case "int":
      dequantizeRow(m, r, out);
      return;
    case "coded":
      rowCodecs.get(m.codec).decodeRow(
        m.data.subarray(r * m.rowBytes, (r + 1) * m.rowBytes),
        out,
        m.tensorScale,
      );
  }
}

/** Bits a matrix takes in storage, scales and zero points included. */
export function matrixBits(m: Matrix): number {
  switch (m.kind) {
    case "dense":
      return 32 * m.rows * m.cols;
    case "int":
      return intMatrixBits(m);
    case "coded":
      // The per-tensor scale (32 bits) counts once.
      return rowCodecs.get(m.codec).bitsPerWeight(m.cols) * m.rows * m.cols +
        (m.tensorScale === 1 ? 0 : 32);
  }
}
