/**
 * What every quantized weight matrix is made of: element codes plus named *side tensors* —
 * scales, zero points, act-order `g_idx`, codebooks, rotation seeds, learned per-channel factors
 * — and the format that decodes them. The two stored shapes ({@linkcode QuantizedMatrix} `int`
 * and {@linkcode CodedMatrix} `coded`) both extend {@linkcode QuantizedBase}; a format that needs
 * more than their fixed fields (a QuIP# or AQLM codebook, a VPTQ index table, AffineQuant's
 * per-channel transform) stores it in `sides` and its format module
 * (`kernels/formats/formats.ts`) reads it there when it decodes a row.
 *
 * @example
 * ```ts
 * // A q8_0 matrix carrying an act-order permutation (a `CodedMatrix` of core/coded.ts).
 * const m = {
 *   kind: "coded",
 *   codec: "q8_0",
 *   rows: 1,
 *   cols: 32,
 *   rowBytes: 34,
 *   data: new Uint8Array(34),
 *   tensorScale: 1,
 *   sides: { g_idx: new Int32Array(32) },
 * } as const;
 * ```
 *
 * @module
 */

/** One side tensor: a flat typed array whose shape its format documents. */
export type SideTensor =
  | Float32Array
  | Float64Array
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array;

/** Side tensors by name (`scales`, `zeros`, `g_idx`, `codebooks`, …). */
export type SideTensors = Readonly<Record<string, SideTensor>>;

/** The part every quantized matrix shares: its shape and its named side tensors. */
export interface QuantizedBase {
  rows: number;
  cols: number;
  /**
   * Side tensors beyond the matrix's fixed fields, for the format that decodes it; absent when it
   * has none. An `int` matrix's `scales` and `zeros` are side tensors too (see `sideTensors` in
   * `kernels/formats/matrix.ts`).
   */
  sides?: SideTensors;
}
