/**
 * A *format module* says everything the project knows about one stored weight format (a family
 * of codecs): its row codecs, the element formats a suite names it by (settings checks, bits per
 * weight, round-to-nearest; `element_format.ts`), the error bound its codecs keep (checked by
 * `codec_conformance_test.ts`), which matrices it decodes, its CPU decoder and storage size, the
 * layout the WebGPU kernels run it in (or `"none"`: decoded to f32 on load, and the result rows
 * say so), and the fixed-scale grid that GPTQ rounds onto (or `"none"`). `formats.ts` registers
 * one module per format, and the row codec and element format registries (`codecs.ts`,
 * `registry.ts`) are made from it; everything else asks the module (`formatOf`) instead of
 * matching codec names.
 *
 * @module
 */
import type { CodedMatrix, RowCodec } from "../../core/coded.ts";
import type { QuantizedMatrix } from "../../core/model.ts";
import type { ElementFormat, FormatSettings } from "./element_format.ts";
import type { GpuCodebookPlan, GpuPlan } from "./gpu_layout.ts";
import { Registry } from "../../core/registry.ts";

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

/**
 * How the WebGPU backend runs a matrix (a chunk layout, or codebook kernels of its own), or why it
 * cannot (then it decodes it to f32).
 */
export type GpuDecoder = (m: QuantizedWeight) => GpuPlan | GpuCodebookPlan | string;

/**
 * How far a codec's decoded values may be from the values encoded:
 * `|decode(encode(x)) − x| ≤ rel · amax + abs`, with amax over the scope that one scale serves:
 * the element itself, the codec's block (a K-quant's 256-value super-block), a scaled
 * minifloat's group (`-g<size>-` in the codec name), the row, or the whole matrix (per-tensor
 * scales).
 */
export interface ErrorBound {
  rel: number;
  abs?: number;
  scope: "element" | "block" | "group" | "row" | "tensor";
  /**
   * Whether the encoder searches its scales (K-quants, IQ4_NL), so that re-encoding decoded
   * values may move them; other codecs must give the same values again.
   */
  searches?: boolean;
}

/** An error bound of the codecs whose names match `pattern`. */
export interface CodecBound {
  pattern: RegExp;
  bound: ErrorBound;
}

/** One stored weight format (see the module notes). */
export interface WeightFormat {
  /** Registry name (`int`, `ggml`, `mx`, …). */
  name: string;
  description: string;
  /**
   * The row codecs known up front, which `rowCodecs` lists (codecs made from settings, such as
   * a scaled minifloat's groups of 128, are made on first use; `int` has none).
   */
  codecs: readonly RowCodec[];
  /** The element formats suites name this format by (`int4`, `mxfp4`, …), or none. */
  elements: readonly ElementFormat[];
  /** The error bounds of this format's codecs; the first whose pattern matches applies. */
  bounds: readonly CodecBound[];
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

/**
 * The CPU decoder and storage size of a format whose matrices are rows of its own codecs, found
 * by name with `codec`: the row codec's own `decodeRow`, and its bits per weight with the
 * per-tensor scale (32 bits) counted once.
 */
export function codecRows(
  format: string,
  codec: (name: string) => RowCodec,
): Pick<WeightFormat, "decodeRow" | "bits"> {
  return {
    decodeRow(m, r, out) {
      const c = asCoded(format, m);
      codec(c.codec).decodeRow(
        c.data.subarray(r * c.rowBytes, (r + 1) * c.rowBytes),
        out,
        c.tensorScale,
      );
    },
    bits(m) {
      const c = asCoded(format, m);
      return codec(c.codec).bitsPerWeight(c.cols) * c.rows * c.cols +
        (c.tensorScale === 1 ? 0 : 32);
    },
  };
}

/** `codecs` by name, for {@linkcode codecRows}; an unknown name throws `UnknownNameError`. */
export function codecsByName(codecs: readonly RowCodec[]): (name: string) => RowCodec {
  const byName = new Registry<RowCodec>("row codec", codecs.map((c) => [c.name, c]));
  return (name) => byName.get(name);
}
