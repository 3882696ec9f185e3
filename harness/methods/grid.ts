/**
 * The fixed-scale grid of a suite format — its rounding with scales fixed group by group and each
 * weight rounded on its own, which GPTQ needs ({@linkcode GroupGrid}). The format module that
 * stores the format's matrices provides it (`grid` in `kernels/formats/format.ts`): integer
 * formats, scaled minifloats, OCP MX and NVFP4 have one; ggml blocks and HQQ's affine codes do
 * not.
 *
 * @module
 */
import type { FormatSpec } from "../../core/suite_types.ts";
import {
  type ElementFormat,
  elementFormats,
  FormatSettingsError,
} from "../../kernels/formats/registry.ts";
import type { GridFactory, GroupGrid } from "../../kernels/formats/format.ts";
import { formatOfCodec } from "../../kernels/formats/formats.ts";

export type { GroupGrid };

interface Found {
  element: Exclude<ElementFormat, { kind: "float" }>;
  grid: GridFactory;
}

/** The suite format's element format and the grid of the format storing it, or why none. */
function gridOf(format: FormatSpec): Found | string {
  const element = elementFormats.get(format.weights);
  if (element.kind === "float") return `format "${format.id}" is not quantized`;
  const reason = element.unsupported(format);
  if (reason !== undefined) return reason;
  const stored = formatOfCodec(element.kind === "int" ? "int" : element.rowCodec(format).name);
  if (stored.grid === "none") {
    return `format "${format.id}" (${format.weights}) does not round weight by weight under ` +
      `group scales; column-wise methods take int, scaled FP8/FP6/FP4, MX and NVFP4 formats`;
  }
  return { element, grid: stored.grid };
}

/** Why `format` has no {@linkcode GroupGrid}, or undefined when it has one. */
export function gridUnsupported(format: FormatSpec): string | undefined {
  const found = gridOf(format);
  return typeof found === "string" ? found : undefined;
}

/** The grid of `format` for a `rows × cols` matrix; throws {@linkcode FormatSettingsError}. */
export function groupGrid(format: FormatSpec, rows: number, cols: number): GroupGrid {
  const found = gridOf(format);
  if (typeof found === "string") throw new FormatSettingsError(found);
  return found.grid(found.element, format, rows, cols);
}
