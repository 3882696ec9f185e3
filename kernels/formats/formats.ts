/**
 * The registry of stored weight formats: one line per format module (`format.ts` says what a
 * module declares). {@linkcode formatOf} finds the module that decodes a matrix; everything that
 * decodes, sizes, packs for the GPU or builds a GPTQ grid asks it.
 *
 * @example
 * ```ts
 * import { quantizeInt } from "./int.ts";
 * const m = quantizeInt(new Float32Array([1, -2, 3, 4]), 1, 4, { bits: 4, group: 0, symmetric: true });
 * formatOf(m).name; // "int"
 * formatOf(m).gpu === "none"; // false: the WebGPU kernels decode it
 * ```
 *
 * @module
 */
import { Registry } from "../../core/registry.ts";
import { codecOf, type QuantizedWeight, type WeightFormat } from "./format.ts";
import { AFFINE_FORMAT } from "./affine_format.ts";
import { GGML_FORMAT } from "./ggml_format.ts";
import { INT_FORMAT } from "./int_format.ts";
import { MX_FORMAT } from "./mx_format.ts";
import { NVFP4_FORMAT } from "./nvfp4_format.ts";
import { SCALED_MINIFLOAT_FORMAT } from "./scaled_minifloat_format.ts";

/** Every stored weight format, by name. */
export const weightFormats: Registry<WeightFormat> = new Registry<WeightFormat>(
  "stored weight format",
  [
    ["int", INT_FORMAT],
    ["scaled_minifloat", SCALED_MINIFLOAT_FORMAT],
    ["mx", MX_FORMAT],
    ["nvfp4", NVFP4_FORMAT],
    ["ggml", GGML_FORMAT],
    ["affine", AFFINE_FORMAT],
  ],
);

/** Thrown for a codec that no registered format owns. */
export class UnknownCodecError extends Error {
  override name = "UnknownCodecError";
}

/** Format by codec name, filled on first use (decoders run per row in hot loops). */
const byCodec = new Map<string, WeightFormat>();

/** The format module that owns codec `codec` (`int` for integer matrices). */
export function formatOfCodec(codec: string): WeightFormat {
  let format = byCodec.get(codec);
  if (format === undefined) {
    const owners = weightFormats.names().map((n) => weightFormats.get(n)).filter((f) =>
      f.owns(codec)
    );
    if (owners.length !== 1) {
      const who = owners.map((f) => `"${f.name}"`).join(" and ");
      throw new UnknownCodecError(
        owners.length === 0
          ? `No weight format owns codec "${codec}" (formats: ${weightFormats.names().join(", ")})`
          : `Codec "${codec}" is owned by ${who}; a codec belongs to one format`,
      );
    }
    format = owners[0]!;
    byCodec.set(codec, format);
  }
  return format;
}

/** The format module that decodes `m`. */
export function formatOf(m: QuantizedWeight): WeightFormat {
  return formatOfCodec(codecOf(m));
}
