/**
 * The registry of stored weight formats: one line per format module (`format.ts` says what a
 * module declares). The row codecs (`codecs.ts`), the suite's element formats (`registry.ts`)
 * and the codecs' error bounds (`codec_conformance_test.ts`) are made from it, so a new format is
 * its module plus its line here. {@linkcode formatOf} finds the module that decodes a matrix;
 * everything that decodes, sizes, packs for the GPU or builds a GPTQ grid asks it.
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
import { E8P_FORMAT } from "./e8p_format.ts";
import { AQLM_FORMAT } from "./aqlm_format.ts";
import { GGML_FORMAT } from "./ggml_format.ts";
import { INT_FORMAT } from "./int_format.ts";
import { MX_FORMAT } from "./mx_format.ts";
import { NVFP4_FORMAT } from "./nvfp4_format.ts";
import { QUIP_FORMAT } from "./quip_format.ts";
import { SCALED_MINIFLOAT_FORMAT } from "./scaled_minifloat_format.ts";
import { VPTQ_FORMAT } from "./vptq_format.ts";

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
    ["e8p", E8P_FORMAT],
    ["quip", QUIP_FORMAT],
    ["aqlm", AQLM_FORMAT],
    ["vptq", VPTQ_FORMAT],
  ],
);

/** Thrown for a codec that no registered format owns. */
export class UnknownCodecError extends Error {
  override name = "UnknownCodecError";
}

/**
 * The module of `formats` that owns codec `codec`, or an {@linkcode UnknownCodecError} when no
 * module or more than one does.
 */
export function ownerOfCodec(formats: Registry<WeightFormat>, codec: string): WeightFormat {
  const owners = formats.names().map((n) => formats.get(n)).filter((f) => f.owns(codec));
  if (owners.length !== 1) {
    const who = owners.map((f) => `"${f.name}"`).join(" and ");
    throw new UnknownCodecError(
      owners.length === 0
        ? `No weight format owns codec "${codec}" (formats: ${formats.names().join(", ")})`
        : `Codec "${codec}" is owned by ${who}; a codec belongs to one format`,
    );
  }
  return owners[0]!;
}

/** Format by codec name, filled on first use (decoders run per row in hot loops). */
const byCodec = new Map<string, WeightFormat>();

/** The format module that owns codec `codec` (`int` for integer matrices). */
export function formatOfCodec(codec: string): WeightFormat {
  let format = byCodec.get(codec);
  if (format === undefined) {
    format = ownerOfCodec(weightFormats, codec);
    byCodec.set(codec, format);
  }
  return format;
}

/** The format module that decodes `m`. */
export function formatOf(m: QuantizedWeight): WeightFormat {
  return formatOfCodec(codecOf(m));
}
