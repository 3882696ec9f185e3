/**
 * Block-coded weight matrices: every row is stored as a run of fixed-size blocks of one codec (GGUF
 * blocks, OCP MX, NVFP4, plain FP8 …), so any row can be decoded on its own inside a matmul and
 * backends can repack rows as their kernels need.
 *
 * @module
 */

import type { QuantizedBase } from "./matrix.ts";

/** A codec for one row of a matrix. Rows are encoded independently. */
export interface RowCodec {
  /** Registry name, e.g. `q4_0`, `mxfp4`, `nvfp4`, `fp8_e4m3`. */
  name: string;
  /** Elements per block along a row; `cols` must be a multiple, or the codec pads the last block. */
  blockSize: number;
  /** Bytes one encoded row of `cols` elements takes. */
  rowBytes(cols: number): number;
  /** Exact storage bits per weight for rows of `cols` elements (block scales included). */
  bitsPerWeight(cols: number): number;
  /**
   * Encodes `values` (one row) into `out` (`rowBytes(values.length)` bytes). `tensorScale` is the
   * per-tensor scale for codecs that have one (NVFP4), chosen by {@linkcode RowCodec.tensorScale}.
   */
  encodeRow(values: Float32Array, out: Uint8Array, tensorScale: number): void;
  /** Decodes one row into `out` (length `cols`). */
  decodeRow(bytes: Uint8Array, out: Float32Array, tensorScale: number): void;
  /** The per-tensor scale for a whole matrix (1 for codecs without one). */
  tensorScale(data: Float32Array): number;
}

/**
 * A `[rows][cols]` matrix whose rows are encoded with a {@linkcode RowCodec}; the format module
 * that owns the codec decodes it, reading any side tensors it needs from `sides`.
 */
export interface CodedMatrix extends QuantizedBase {
  kind: "coded";
  /** The codec's registry name. */
  codec: string;
  /** Bytes per encoded row. */
  rowBytes: number;
  /** `rows × rowBytes` bytes. */
  data: Uint8Array;
  /** Per-tensor scale (1 when the codec has none). */
  tensorScale: number;
}
