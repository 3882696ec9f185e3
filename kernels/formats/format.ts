/**
 * A *format module* says everything the project knows about one stored weight format (a family
 * of codecs): which matrices it decodes, its CPU decoder and storage size, the layout the WebGPU
 * kernels run it in (or `"none"`: decoded to f32 on load, and the result rows say so), and the
 * fixed-scale grid that GPTQ rounds onto (or `"none"`). `formats.ts` registers one module per
 * format; everything else asks the module (`formatOf`) instead of matching codec names.
 *
 * @module
 */
import type { CodedMatrix } from "../../core/coded.ts";
import type { QuantizedMatrix } from "../../core/model.ts";
import type { ElementFormat, FormatSettings } from "./registry.ts";
import type { GpuPlan } from "./gpu_layout.ts";
import { rowCodecs } from "./codecs.ts";

/** A quantized weight matrix: integer codes + scales, or rows of a codec. */
export type QuantizedWeight = QuantizedMatrix | CodedMatrix;

/**
 * A format's rounding with its scales fixed explicitly, group by group, and each weight rounded
 * on its own — the quantizer GPTQ needs: it fixes a group's parameters when it reaches the group,
 * then rounds column after column as earlier errors update the weights.
 *
 * Per-channel and per-tensor parameters (and tensor-level scales) come from the matrix as it is
 * at {@linkcode GroupGrid.init}; group parameters from {@linkcode GroupGrid.fit}. Each rounding
 * records its code; {@linkcode GroupGrid.build} stores the last code of every weight with the
 * fixed parameters, byte for byte as the format's own encoder lays a matrix out, so decoding the
 * result gives exactly the values {@linkcode GroupGrid.round} returned.
 */
export interface GroupGrid {
  /** Columns per group; the number of columns when one set of parameters spans a row. */
  readonly groupSize: number;
  /** Fixes the per-channel, per-tensor and tensor-level parameters from `w` (`rows × cols`). */
  init(w: Float64Array): void;
  /** Fixes every row's parameters of the group of columns `[c0, c1)` from `w`. */
  fit(w: Float64Array, c0: number, c1: number): void;
  /** `w` rounded on row `r`'s grid at column `c`; records the code. */
  round(r: number, c: number, w: number): number;
  /** The stored matrix of the recorded codes. */
  build(): QuantizedWeight;
}

/** Makes the {@linkcode GroupGrid} of a suite format (settings already checked to fit). */
export type GridFactory = (
  element: Exclude<ElementFormat, { kind: "float" }>,
  settings: FormatSettings,
  rows: number,
  cols: number,
) => GroupGrid;

/** How the WebGPU backend runs a matrix, or why it cannot (then it decodes it to f32). */
export type GpuDecoder = (m: QuantizedWeight) => GpuPlan | string;

/** One stored weight format (see the module notes). */
export interface WeightFormat {
  /** Registry name (`int`, `ggml`, `mx`, …). */
  name: string;
  description: string;
  /**
   * Whether this format decodes matrices of codec `codec` (`int` for {@linkcode QuantizedMatrix};
   * see {@linkcode codecOf}). Every codec belongs to exactly one format.
   */
  owns(codec: string): boolean;
  /** Decodes row `r` of `m` into `out` (length `m.cols`): the numerical reference. */
  decodeRow(m: QuantizedWeight, r: number, out: Float32Array): void;
  /** Storage bits of `m`: codes, scales, side tensors and any per-tensor scale. */
  bits(m: QuantizedWeight): number;
  /** The WebGPU layout and WGSL decoders of a matrix, or `"none"` when the format has none. */
  gpu: GpuDecoder | "none";
  /** The fixed-scale grid GPTQ rounds onto, or `"none"` when the rounding does not split so. */
  grid: GridFactory | "none";
}

/** The codec name a format module is found by: `int` for integer matrices. */
export function codecOf(m: QuantizedWeight): string {
  return m.kind === "int" ? "int" : m.codec;
}

/** Thrown when a format module is handed a matrix of another format. */
export class WrongFormatError extends TypeError {
  override name = "WrongFormatError";
}

/** `m` as a coded matrix, or a {@linkcode WrongFormatError} naming the format. */
export function asCoded(format: string, m: QuantizedWeight): CodedMatrix {
  if (m.kind !== "coded") {
    throw new WrongFormatError(`Format "${format}" decodes coded matrices, got an int matrix`);
  }
  return m;
}

/** `m` as an integer matrix, or a {@linkcode WrongFormatError} naming the format. */
export function asInt(format: string, m: QuantizedWeight): QuantizedMatrix {
  if (m.kind !== "int") {
    throw new WrongFormatError(`Format "${format}" decodes int matrices, got codec "${m.codec}"`);
  }
  return m;
}

/** The CPU decoder of a codec-based format: the row codec's own `decodeRow`. */
export function codecDecodeRow(m: QuantizedWeight, r: number, out: Float32Array): void {
  const c = asCoded(codecOf(m), m);
  rowCodecs.get(c.codec).decodeRow(
    c.data.subarray(r * c.rowBytes, (r + 1) * c.rowBytes),
    out,
    c.tensorScale,
  );
}

/** Storage bits of a codec-based matrix; the per-tensor scale (32 bits) counts once. */
export function codecBits(m: QuantizedWeight): number {
  const c = asCoded(codecOf(m), m);
  return rowCodecs.get(c.codec).bitsPerWeight(c.cols) * c.rows * c.cols +
    (c.tensorScale === 1 ? 0 : 32);
}
