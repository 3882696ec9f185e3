/**
 * Element formats that weights can be stored in, and the format presets a suite may name by a
 * bare string (`f32`, `int4`, `fp8`, `mxfp4`, `q4_k`, …): `f32` and `native` (unquantized), and
 * every element format a registered format module declares (`formats.ts`; `element_format.ts`
 * says what an element format is).
 *
 * Each format says what a suite's `group`, `symmetric` and `scale_dtype` mean for it, which of
 * them contradict it ({@linkcode ElementFormat.unsupported}: a method turns the reason into a
 * skipped cell), its exact storage bits per weight, and how to round a dense matrix to it (RTN):
 *
 * - `float`: `f32`, the unquantized baseline;
 * - `int`: integer codes + scales per channel (`group: 0`), per group or per tensor (`group: -1`),
 *   symmetric or not, scales in `scale_dtype` (default f16) — `int_format.ts`;
 * - `coded`: rows of a row codec. Fixed-block formats (ggml blocks, MX, NVFP4, `f16`,
 *   `bf16`) take `group` 0 or their own block only; scaled minifloats (`fp8` …) map `group` to one
 *   scale per channel (0), per group, or per tensor (-1), with `scale_dtype` default f32.
 *
 * @module
 */
import { Registry } from "../../core/registry.ts";
import type { ElementFormat, FloatElementFormat } from "./element_format.ts";
import type { WeightFormat } from "./format.ts";
import { weightFormats } from "./formats.ts";

export type {
  CodedElementFormat,
  ElementFormat,
  FloatElementFormat,
  FormatSettings,
  IntElementFormat,
} from "./element_format.ts";
export { FormatSettingsError } from "./element_format.ts";

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

/** The unquantized formats, which no format module stores. */
const FLOAT_FORMATS: readonly FloatElementFormat[] = [
  floatFormat("f32", "IEEE float32, unquantized"),
  floatFormat(
    "native",
    "the weights as the model file stores them (e.g. a llama-quantize GGUF's blocks), with " +
      "method none; reported under the file's own type",
  ),
];

/**
 * The element formats of a registry of format modules: `f32`, `native`, and every format a
 * module declares ({@linkcode WeightFormat.elements}); a name declared twice is an error.
 */
export function elementRegistry(formats: Registry<WeightFormat>): Registry<ElementFormat> {
  const declared = formats.names().flatMap((name) => formats.get(name).elements);
  return new Registry<ElementFormat>(
    "weight format",
    [...FLOAT_FORMATS, ...declared].map((format) => [format.name, format]),
  );
}

/** Known element formats for `weights:`. */
export const elementFormats: Registry<ElementFormat> = elementRegistry(weightFormats);

/**
 * Default settings of a format named by a bare string: per-channel (group 0), symmetric.
 * `int4` alone means per-channel symmetric int4; `q4_k` alone its own 256-weight blocks.
 */
export const DEFAULT_GROUP = 0;
/** Integer formats are symmetric unless a suite says `symmetric: false`. */
export const DEFAULT_SYMMETRIC = true;
/** Bits of one integer-format scale by default (`scale_dtype: f16`, as deployed). */
export const SCALE_BITS = 16;
