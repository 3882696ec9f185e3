/**
 * Element formats that weights can be stored in, and the format presets a suite may name by a
 * bare string (`f32`, `int4`, `fp8`, `mxfp4`, `q4_k`, …).
 *
 * Each format says what a suite's `group`, `symmetric` and `scale_dtype` mean for it, which of
 * them contradict it ({@linkcode ElementFormat.unsupported}: a method turns the reason into a
 * skipped cell), its exact storage bits per weight, and how to round a dense matrix to it (RTN):
 *
 * - `float`: `f32`, the unquantized baseline;
 * - `int`: integer codes + scales per channel (`group: 0`), per group or per tensor (`group: -1`),
 *   symmetric or not, scales in `scale_dtype` (default f16) — `int.ts`;
 * - `coded`: rows of a {@linkcode RowCodec}. Fixed-block formats (ggml blocks, MX, NVFP4, `f16`,
 *   `bf16`) take `group` 0 or their own block only; scaled minifloats (`fp8` …) map `group` to one
 *   scale per channel (0), per group, or per tensor (-1), with `scale_dtype` default f32.
 *
 * @module
 */
import { Registry } from "../../core/registry.ts";
import type { DenseMatrix, Matrix } from "../../core/model.ts";
import type { RowCodec } from "../../core/coded.ts";
import { ensureRowCodec, rowCodecs } from "./codecs.ts";
import { intBitsPerWeight, type IntQuantConfig, PER_TENSOR, quantizeInt } from "./int.ts";
import { FP4_E2M1, FP6_E2M3, FP6_E3M2, FP8_E4M3, FP8_E5M2, type Minifloat } from "./minifloat.ts";
import { encodeMatrix } from "./row_codecs.ts";
import { scaledMinifloatCodec } from "./scaled_minifloat.ts";
import type { ScaleDtype } from "../../core/model.ts";
import { isScaleDtype, SCALE_DTYPES } from "./scale_dtype.ts";

/** The settings of a suite format that an element format interprets (a `FormatSpec` fits). */
export interface FormatSettings {
  /** Weights per scale along a row: 0 one per output channel, -1 one per tensor. */
  group: number;
  symmetric: boolean;
  /** Further settings; `scale_dtype` (`f16`, `bf16`, `f32`) is read here. */
  options: Record<string, unknown>;
}

interface ElementFormatBase {
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
  /** The codec for `settings` (registered in `rowCodecs` on first use). */
  rowCodec(settings: FormatSettings): RowCodec;
  /** The codec's encoder over a dense matrix; throws {@linkcode FormatSettingsError} on misfits. */
  quantize(settings: FormatSettings, m: DenseMatrix): Matrix;
}

/** What a weight element is stored as. */
export type ElementFormat = FloatElementFormat | IntElementFormat | CodedElementFormat;

/** Thrown when a format is asked to quantize with settings that contradict it. */
export class FormatSettingsError extends Error {
  override name = "FormatSettingsError";
}

/** `scale_dtype` of `settings` (unchecked: {@linkcode ElementFormat.unsupported} checks it). */
function scaleDtypeOf(settings: FormatSettings, fallback: ScaleDtype): ScaleDtype {
  const value = settings.options.scale_dtype;
  return isScaleDtype(value) ? value : fallback;
}

function badScaleDtype(settings: FormatSettings): string | undefined {
  const value = settings.options.scale_dtype;
  if (value === undefined || isScaleDtype(value)) return undefined;
  return `scale_dtype ${JSON.stringify(value)} is not one of ${SCALE_DTYPES.join(", ")}`;
}

function checked<T>(
  format: ElementFormatBase,
  settings: FormatSettings,
  quantize: () => T,
): T {
  const reason = format.unsupported(settings);
  if (reason !== undefined) throw new FormatSettingsError(reason);
  return quantize();
}

function floatFormat(name: string, description: string): FloatElementFormat {
  return {
    name,
    kind: "float",
    bits: 32,
    description,
    unsupported(settings) {
      if (settings.group !== 0 || settings.options.scale_dtype !== undefined) {
        return `format "${name}" is unquantized and has no scales; group and scale_dtype ` +
          `do not apply`;
      }
      return undefined;
    },
    bitsPerWeight: () => 32,
  };
}

function intFormat(bits: number): IntElementFormat {
  const format: IntElementFormat = {
    name: `int${bits}`,
    kind: "int",
    bits,
    description: `${bits}-bit integer codes + scales (per channel, group or tensor)`,
    unsupported: badScaleDtype,
    intConfig: (settings) => ({
      bits,
      group: settings.group,
      symmetric: settings.symmetric,
      scaleDtype: scaleDtypeOf(settings, "f16"),
    }),
    bitsPerWeight: (settings, rows, cols) =>
      intBitsPerWeight(format.intConfig(settings), cols, rows),
    quantize: (settings, m) =>
      checked(
        format,
        settings,
        () => quantizeInt(m.data, m.rows, m.cols, format.intConfig(settings)),
      ),
  };
  return format;
}

/** Shared parts of coded formats: bits per weight and RTN through the codec. */
function codedFormat(
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
interface FixedScales {
  /** The `scale_dtype` value that describes the format's scales, if one does (`f16` for ggml). */
  dtype?: ScaleDtype;
  /** The format's scales in words, for messages. */
  words: string;
}

/**
 * A format with a fixed codec: `group` must be 0 or its block, `symmetric: false` only where
 * the format stores a per-block minimum, `scale_dtype` only where it names the format's own.
 */
function fixedFormat(
  name: string,
  codec: string,
  bits: number,
  description: string,
  options: { minimum: boolean; scales: FixedScales; tensorScale?: boolean },
): CodedElementFormat {
  const rowCodec = rowCodecs.get(codec);
  const block = rowCodec.blockSize;
  return codedFormat({
    name,
    codec,
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

const GGML_SCALES: FixedScales = { dtype: "f16", words: "f16 block scales" };
const NO_SCALES: FixedScales = { words: "no scales" };
const E8M0_SCALES: FixedScales = { words: "E8M0 (power-of-two) block scales" };

function ggml(
  name: string,
  bits: number,
  description: string,
  minimum = false,
): CodedElementFormat {
  return fixedFormat(name, name, bits, `ggml ${description}`, {
    minimum,
    scales: GGML_SCALES,
  });
}

function mx(name: string, codec: string, bits: number, element: string): CodedElementFormat {
  return fixedFormat(name, codec, bits, `OCP MX: ${element} × 32 + an E8M0 scale`, {
    minimum: false,
    scales: E8M0_SCALES,
  });
}

/** FP8/FP6/FP4 elements with a float scale per channel, group or tensor (amax / elem_max). */
function scaledFormat(name: string, element: Minifloat, description: string): CodedElementFormat {
  const config = (settings: FormatSettings) => ({
    element,
    group: settings.group,
    scaleDtype: settings.group === PER_TENSOR ? "f32" as const : scaleDtypeOf(settings, "f32"),
  });
  return codedFormat({
    name,
    codec: `${element.name}-{ch|g<group>}-<scale_dtype> or ${element.name}-pt`,
    block: undefined,
    bits: element.bits,
    description: `${description} + a float scale (amax / ${element.max}) per channel, group ` +
      `or tensor`,
    rowCodec: (settings) => ensureRowCodec(scaledMinifloatCodec(config(settings))),
    unsupported(settings) {
      if (!settings.symmetric) {
        return `format "${name}" scales symmetrically (no zero point); symmetric: false ` +
          `contradicts it`;
      }
      const dtype = settings.options.scale_dtype;
      if (settings.group === PER_TENSOR && dtype !== undefined && dtype !== "f32") {
        return `format "${name}" stores a per-tensor scale as f32; scale_dtype ` +
          `${JSON.stringify(dtype)} contradicts it`;
      }
      return badScaleDtype(settings);
    },
  }, (settings) => settings.group === PER_TENSOR);
}

/** Known element formats for `weights:`. */
export const elementFormats = new Registry<ElementFormat>("weight format", [
  ["f32", floatFormat("f32", "IEEE float32, unquantized")],
  [
    "native",
    floatFormat(
      "native",
      "the weights as the model file stores them (e.g. a llama-quantize GGUF's blocks), with " +
        "method none; reported under the file's own type",
    ),
  ],
  ["int8", intFormat(8)],
  ["int4", intFormat(4)],
  ["int3", intFormat(3)],
  ["int2", intFormat(2)],
]);

/** Registers a format under its name. */
function add(format: ElementFormat): void {
  elementFormats.register(format.name, format);
}

add(fixedFormat("f16", "f16", 16, "weights rounded to IEEE float16 (ties to even)", {
  minimum: false,
  scales: NO_SCALES,
}));
add(fixedFormat("bf16", "bf16", 16, "weights rounded to bfloat16 (ties to even)", {
  minimum: false,
  scales: NO_SCALES,
}));
add(scaledFormat("fp8", FP8_E4M3, "FP8 E4M3 (OCP, max 448)"));
add(scaledFormat("fp8_e5m2", FP8_E5M2, "FP8 E5M2 (OCP, max 57344)"));
add(scaledFormat("fp6_e2m3", FP6_E2M3, "FP6 E2M3 (OCP MX, max 7.5)"));
add(scaledFormat("fp6_e3m2", FP6_E3M2, "FP6 E3M2 (OCP MX, max 28)"));
add(scaledFormat("fp4", FP4_E2M1, "FP4 E2M1 (OCP MX, max 6)"));
add(mx("mxfp8", "mxfp8_e4m3", 8, "FP8 E4M3"));
add(mx("mxfp8_e5m2", "mxfp8_e5m2", 8, "FP8 E5M2"));
add(mx("mxfp6", "mxfp6_e2m3", 6, "FP6 E2M3"));
add(mx("mxfp6_e3m2", "mxfp6_e3m2", 6, "FP6 E3M2"));
add(mx("mxfp4", "mxfp4", 4, "FP4 E2M1"));
add(mx("mxint8", "mxint8", 8, "INT8 (k/64)"));
add(fixedFormat("nvfp4", "nvfp4", 4, "NVFP4: E2M1 × 16 + an E4M3 scale, and an f32 tensor scale", {
  minimum: false,
  scales: { words: "E4M3 block scales and an f32 tensor scale" },
  tensorScale: true,
}));
add(ggml("q4_0", 4, "Q4_0: 32 × 4 bits + f16 scale"));
add(ggml("q4_1", 4, "Q4_1: 32 × 4 bits + f16 scale and minimum", true));
add(ggml("q5_0", 5, "Q5_0: 32 × 5 bits + f16 scale"));
add(ggml("q5_1", 5, "Q5_1: 32 × 5 bits + f16 scale and minimum", true));
add(ggml("q8_0", 8, "Q8_0: 32 × 8 bits + f16 scale"));
add(ggml("q2_0", 2, "Q2_0: 64 × 2 bits + f16 scale"));
add(ggml("q2_k", 2, "Q2_K: 256 × 2 bits, 4-bit sub-block scales and minima", true));
add(ggml("q3_k", 3, "Q3_K: 256 × 3 bits, 6-bit sub-block scales"));
add(ggml("q4_k", 4, "Q4_K: 256 × 4 bits, 6-bit sub-block scales and minima", true));
add(ggml("q5_k", 5, "Q5_K: 256 × 5 bits, 6-bit sub-block scales and minima", true));
add(ggml("q6_k", 6, "Q6_K: 256 × 6 bits, 8-bit sub-block scales"));
add(ggml("iq4_nl", 4, "IQ4_NL: 32 × 4-bit non-linear levels + f16 scale"));
add(fixedFormat("gguf_mxfp4", "gguf_mxfp4", 4, "ggml MXFP4 block: 32 × E2M1 + an E8M0 scale", {
  minimum: false,
  scales: E8M0_SCALES,
}));

/**
 * Default settings of a format named by a bare string: per-channel (group 0), symmetric.
 * `int4` alone means per-channel symmetric int4; `q4_k` alone its own 256-weight blocks.
 */
export const DEFAULT_GROUP = 0;
/** Integer formats are symmetric unless a suite says `symmetric: false`. */
export const DEFAULT_SYMMETRIC = true;
/** Bits of one integer-format scale by default (`scale_dtype: f16`, as deployed). */
export const SCALE_BITS = 16;
