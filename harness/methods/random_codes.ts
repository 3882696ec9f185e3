/**
 * Arbitrary codes of a format, for speed and memory only: every linear of every block becomes a
 * matrix of the requested format whose contents are seeded noise of a weight's magnitude, built
 * in the time it takes to draw them. Decode speed and storage depend on a format's layout and
 * bytes, not on which codes it holds, and the methods that really fill the codebook formats
 * (QuIP#'s search over 2^16 E8P12 codewords, AQLM's and VPTQ's k-means) cannot quantize a
 * billion weights on a CPU in a benchmark's minutes; this method lets `throughput` time those
 * formats at that size. Its models compute nothing meaningful, so the suite loader refuses it
 * with any task but `throughput` ({@linkcode Method.tasks}).
 *
 * Coded formats with a `timingMatrix` (AQLM, VPTQ) draw from it; with `e8p: true`, `int2`,
 * `int3` and `int4` per row become QuIP#'s E8P12 and its residual variants (`e8pTimingMatrix`,
 * the layout quip_sharp stores for those suite formats); integer formats and the other coded
 * formats are rounded to nearest (cheap for them), which keeps their scales realistic. The
 * contents of each linear are drawn from the suite seed mixed with its layer and name. Layers
 * stream through `quantizeLayers` like RTN's, so a 1.1B model's float layers are read one at a
 * time.
 *
 * @module
 */
import type { Matrix } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { seededRandom } from "../../core/random.ts";
import { elementFormats, FormatSettingsError } from "../../kernels/formats/registry.ts";
import { e8pTimingMatrix } from "../../kernels/formats/e8p_format.ts";
import { hadamardPlan } from "../../kernels/cpu/hadamard.ts";
import type { Method } from "./method.ts";
import { quantizeEachLinear, quantizeMatrix } from "./rtn.ts";

/** Options and their defaults. */
export const RANDOM_CODES_OPTIONS = { e8p: false };

/** The E8P bits of a suite format QuIP# stores as E8P12 codes (`int2` … `int4` per row). */
const E8P_BITS: Readonly<Record<string, 2 | 3 | 4>> = { int2: 2, int3: 3, int4: 4 };

/** Why `random_codes` cannot make `format` (with `e8p` as the options say), or undefined. */
function misfit(format: FormatSpec, e8p: boolean): string | undefined {
  const element = elementFormats.get(format.weights);
  if (e8p) {
    if (E8P_BITS[format.weights] === undefined || format.group !== 0 || !format.symmetric) {
      return `random_codes with e8p: true stores E8P12 codes per row (as quip_sharp does): ` +
        `format "${format.id}" is not int2, int3 or int4 with group 0, symmetric`;
    }
    return undefined;
  }
  if (element.kind === "float") {
    return `method "random_codes" writes quantized codes; format "${format.id}" is ` +
      `${format.weights}, the unquantized baseline (use method none)`;
  }
  return element.unsupported(format);
}

/** The arbitrary matrix of `format` for one `rows × cols` linear whose weights are `original`. */
function randomMatrix(
  original: Matrix,
  format: FormatSpec,
  e8p: boolean,
  random: () => number,
): Matrix {
  const reason = misfit(format, e8p);
  if (reason !== undefined) throw new FormatSettingsError(reason);
  const { rows, cols } = original;
  if (e8p) {
    // QuIP#'s transforms need a Hadamard factor for both sides; without one nothing could run
    // the matrix, so say so here rather than at the first forward pass.
    hadamardPlan(rows);
    hadamardPlan(cols);
    return e8pTimingMatrix(E8P_BITS[format.weights]!, rows, cols, random);
  }
  const element = elementFormats.get(format.weights);
  if (element.kind === "coded" && element.timingMatrix) {
    return element.timingMatrix(format, rows, cols, random);
  }
  return quantizeMatrix(original, format);
}

/** Seeded arbitrary codes of any integer or coded format, for throughput and memory only. */
export const randomCodes: Method = {
  name: "random_codes",
  description: "seeded arbitrary codes of a format (AQLM, VPTQ, E8P12 with e8p: true, or RTN " +
    "for the others): for throughput only, refused with quality tasks",
  options: RANDOM_CODES_OPTIONS,
  tasks: ["throughput"],
  unsupported: (format) => misfit(format, false),
  quantize(model, format, options, ctx) {
    const e8p = options.e8p === true;
    return quantizeEachLinear(model, format, ctx, (original, name, layer) =>
      randomMatrix(
        original,
        format,
        e8p,
        seededRandom(ctx.seed, `random_codes layer ${layer} ${name}`),
      ));
  },
};
