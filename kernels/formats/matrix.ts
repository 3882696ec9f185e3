/**
 * Format-independent access to weight matrices: decode a row, count storage bits, name the
 * format, read side tensors. Quantized matrices are decoded and sized by their format module
 * (`formats.ts`).
 *
 * @module
 */
import type { Matrix } from "../../core/model.ts";
import type { SideTensor, SideTensors } from "../../core/matrix.ts";
import { formatOf } from "./formats.ts";

/** Decodes row `r` of any matrix into `out` (length `cols`). */
export function decodeRow(m: Matrix, r: number, out: Float32Array): void {
  if (m.kind === "dense") out.set(m.data.subarray(r * m.cols, (r + 1) * m.cols));
  else formatOf(m).decodeRow(m, r, out);
}

/** Bits a matrix takes in storage, scales and zero points included. */
export function matrixBits(m: Matrix): number {
  return m.kind === "dense" ? 32 * m.rows * m.cols : formatOf(m).bits(m);
}

/** What a matrix's weights are stored as: `f32`, `int<bits>`, or the codec name (`q4_k`, …). */
export function storageName(m: Matrix): string {
  return m.kind === "dense" ? "f32" : m.kind === "int" ? `int${m.bits}` : m.codec;
}

/**
 * A matrix's side tensors by name: an integer matrix's `scales` (and `zeros` when asymmetric),
 * then any others it carries in `sides`. Dense matrices have none.
 */
export function sideTensors(m: Matrix): SideTensors {
  if (m.kind === "dense") return {};
  if (m.kind === "coded") return m.sides ?? {};
  return { scales: m.scales, ...(m.zeros ? { zeros: m.zeros } : {}), ...m.sides };
}

/** Thrown when a format asks a matrix for a side tensor it does not carry. */
export class MissingSideTensorError extends Error {
  override name = "MissingSideTensorError";
}

/** Side tensor `name` of `m`, or a {@linkcode MissingSideTensorError} listing the ones it has. */
export function sideTensor(m: Matrix, name: string): SideTensor {
  const sides = sideTensors(m);
  const tensor = sides[name];
  if (tensor === undefined) {
    const known = Object.keys(sides);
    throw new MissingSideTensorError(
      `A ${storageName(m)} matrix has no side tensor "${name}" ` +
        `(it has: ${known.length ? known.join(", ") : "none"})`,
    );
  }
  return tensor;
}
