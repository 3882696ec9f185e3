/**
 * What a suite's weight format (`int4`, `fp8`, `mxfp4`, `q4_k`, …) is to the methods: an
 * *element format* says what a suite's `group`, `symmetric` and `scale_dtype` mean for it, which
 * of them contradict it ({@linkcode ElementFormat.unsupported}: a method turns the reason into a
 * skipped cell), its exact storage bits per weight, and how to round a dense matrix to it (RTN).
 * Format modules (`format.ts`) declare their element formats with the builders here;
 * `registry.ts` collects them into `elementFormats`.
 *
 * @module
 */
import type { DenseMatrix, Matrix, ScaleDtype } from "../../core/model.ts";
import type { RowCodec } from "../../core/coded.ts";
import type { IntQuantConfig } from "./int.ts";
import { encodeMatrix } from "./row_codecs.ts";
import { isScaleDtype, SCALE_DTYPES } from "./scale_dtype.ts";

/** The settings of a suite format that an element format interprets (a `FormatSpec` fits). */
export interface FormatSettings {
  /** Weights per scale along a row: 0 one per output channel, -1 one per tensor. */
  group: number;
  symmetric: boolean;
  /** Further settings; `scale_dtype` (`f16`, `bf16`, `f32`) is read here. */
  options: Record<string, unknown>;
}

/** What every element format says. */
export interface ElementFormatBase {
  name: string;
  /** Bits of one element code (scales excluded; the nominal width of block formats). */
  bits: number;
  description: string;
  /** Why `settings` contradict this format, or undefined when they fit. */
  unsupported(settings: FormatSettings): string | undefined;
  /**
   * Exact storage bits per weight of a `rows × cols` matrix: codes, scales, zero points, block
   * padding and a per-tensor scale (32 bits) included.
   */
  bitsPerWeight(settings: FormatSettings, rows: number, cols: number): number;
}

/** A format weights run in unquantized (`f32`). */
export interface FloatElementFormat extends ElementFormatBase {
  kind: "float";
}

/** Integer codes with scales (`int.ts`). */
export interface IntElementFormat extends ElementFormatBase {
  kind: "int";
  /** The quantizer configuration for `settings`. */
  intConfig(settings: FormatSettings): IntQuantConfig;
  /** Round-to-nearest of a dense matrix; throws {@linkcode FormatSettingsError} on a misfit. */
  quantize(settings: FormatSettings, m: DenseMatrix): Matrix;
}

/** Rows of a {@linkcode RowCodec}. */
export interface CodedElementFormat extends ElementFormatBase {
  kind: "coded";
  /**
   * The codec's registry name, or for formats whose settings pick the codec, its name pattern
   * (`fp8_e4m3-{ch|g<group>}-<scale_dtype>` or `fp8_e4m3-pt`).
   */
  codec: string;
  /** Values per block when the format fixes it (a suite `group` must be 0 or this). */
  block: number | undefined;
  /** The codec for `settings` (made on first use when the settings pick it). */
  rowCodec(settings: FormatSettings): RowCodec;
  /** The codec's encoder over a dense matrix; throws {@linkcode FormatSettingsError} on misfits. */
  quantize(settings: FormatSettings, m: DenseMatrix): Matrix;
  /**
   * A matrix of this format with seeded arbitrary contents, for timing the decoders, where
   * {@linkcode CodedElementFormat.quantize} costs far more than a benchmark can spend (AQLM's
   * k-means over 2^16 codewords); absent, `deno task perf` times what `quantize` makes. `random`
   * draws the contents (default: a fixed seed per shape); the `random_codes` method passes one
   * seeded per suite, layer and linear.
   */
  timingMatrix?(
    settings: FormatSettings,
    rows: number,
    cols: number,
    random?: () => number,
  ): Matrix;
}

/** What a weight element is stored as. */
export type ElementFormat = FloatElementFormat | IntElementFormat | CodedElementFormat;

/** Thrown when a format is asked to quantize with settings that contradict it. */
export class FormatSettingsError extends Error {
  override name = "FormatSettingsError";
}

/** `scale_dtype` of `settings` (unchecked: {@linkcode ElementFormat.unsupported} checks it). */
export function scaleDtypeOf(settings: FormatSettings, fallback: ScaleDtype): ScaleDtype {
  const value = settings.options.scale_dtype;
  return isScaleDtype(value) ? value : fallback;
}

/** Why `settings.options.scale_dtype` is no scale type, or undefined when absent or one. */
export function badScaleDtype(settings: FormatSettings): string | undefined {
  const value = settings.options.scale_dtype;
  if (value === undefined || isScaleDtype(value)) return undefined;
  return `scale_dtype ${JSON.stringify(value)} is not one of ${SCALE_DTYPES.join(", ")}`;
}

/** `quantize()`, or a {@linkcode FormatSettingsError} when `settings` contradict `format`. */
export function checked<T>(
  format: ElementFormatBase,
  settings: FormatSettings,
  quantize: () => T,
): T {
  const reason = format.unsupported(settings);
  if (reason !== undefined) throw new FormatSettingsError(reason);
  return quantize();
}

/** Shared parts of coded formats: bits per weight and RTN through the codec. */
export function codedFormat(
  fields: Omit<CodedElementFormat, "kind" | "bitsPerWeight" | "quantize">,
  hasTensorScale: (settings: FormatSettings) => boolean,
): CodedElementFormat {
  const format: CodedElementFormat = {
    ...fields,
    kind: "coded",
    bitsPerWeight(settings, rows, cols) {
      const perTensor = hasTensorScale(settings) ? 32 / (rows * cols) : 0;
      return format.rowCodec(settings).bitsPerWeight(cols) + perTensor;
    },
    quantize: (settings, m) =>
      checked(
        format,
        settings,
        () => encodeMatrix(format.rowCodec(settings), m.rows, m.cols, m.data),
      ),
  };
  return format;
}

/** How a fixed-block format stores its scales, for the `scale_dtype` check. */
export interface FixedScales {
  /** The `scale_dtype` value that describes the format's scales, if one does (`f16` for ggml). */
  dtype?: ScaleDtype;
  /** The format's scales in words, for messages. */
  words: string;
}

/** Scales of OCP MX blocks (and ggml's MXFP4 block). */
export const E8M0_SCALES: FixedScales = { words: "E8M0 (power-of-two) block scales" };

/**
 * A format with a fixed codec: `group` must be 0 or its block, `symmetric: false` only where
 * the format stores a per-block minimum, `scale_dtype` only where it names the format's own.
 */
export function fixedFormat(
  name: string,
  rowCodec: RowCodec,
  bits: number,
  description: string,
  options: { minimum: boolean; scales: FixedScales; tensorScale?: boolean },
): CodedElementFormat {
  const block = rowCodec.blockSize;
  return codedFormat({
    name,
    codec: rowCodec.name,
    block,
    bits,
    description,
    rowCodec: () => rowCodec,
    unsupported(settings) {
      if (settings.group !== 0 && settings.group !== block) {
        return block === 1
          ? `format "${name}" stores every weight on its own; group ${settings.group} ` +
            `does not apply`
          : `format "${name}" has a fixed block of ${block} weights; group ${settings.group} ` +
            `contradicts it (omit group or use ${block})`;
      }
      if (!settings.symmetric && !options.minimum) {
        return `format "${name}" has no zero point or block minimum; symmetric: false ` +
          `contradicts it`;
      }
      const dtype = settings.options.scale_dtype;
      if (dtype !== undefined && dtype !== options.scales.dtype) {
        return `format "${name}" stores ${options.scales.words}; scale_dtype ` +
          `${JSON.stringify(dtype)} contradicts it`;
      }
      return undefined;
    },
  }, () => options.tensorScale === true);
}
