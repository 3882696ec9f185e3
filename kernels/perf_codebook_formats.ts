/**
 * The codebook formats `deno task perf` times on the CPU and WebGPU: QuIP#'s E8P (`e8p12`,
 * `-rvq3`, `-rvq4`), every AQLM scheme suites name and the VPTQ ones (plus the release's
 * `vptq-v8-k65536-256`), and QuIP's `quip-int2` and `quip-int3` (codes between two rotations,
 * decoded in the matmul as these are), as random matrices of a shape (speed does not depend on
 * the codes).
 *
 * @module
 */
import type { Matrix } from "../core/model.ts";
import { e8pTimingMatrix } from "./formats/e8p_format.ts";
import { elementFormats } from "./formats/registry.ts";
import { parseVptqName } from "./formats/vptq.ts";
import { vptqTimingMatrix } from "./formats/vptq_format.ts";
import { quipMatrix } from "./formats/quip_format.ts";
import { seededRandom } from "../core/random.ts";

/** A codebook format of the perf run: its label and a random matrix of a shape. */
export interface CodebookPerfFormat {
  name: string;
  /** A random `rows × cols` matrix, or undefined where the format cannot take the shape. */
  make(rows: number, cols: number): Matrix | undefined;
}

function e8pFormat(bits: 2 | 3 | 4): CodebookPerfFormat {
  return {
    name: bits === 2 ? "e8p12" : `e8p12-rvq${bits}`,
    make: (rows, cols) =>
      e8pTimingMatrix(bits, rows, cols, seededRandom(0, `e8p timing ${rows}x${cols}`)),
  };
}

function vptqFormat(name: string): CodebookPerfFormat {
  return {
    name,
    make: (rows, cols) =>
      vptqTimingMatrix(
        parseVptqName(name),
        rows,
        cols,
        seededRandom(0, `vptq timing ${rows}x${cols}`),
      ),
  };
}

/** QuIP's codes of `bits` bits, Kronecker rotations (the method's default) and unit sides. */
function quipFormat(bits: 2 | 3): CodebookPerfFormat {
  return {
    name: `quip-int${bits}`,
    make(rows, cols) {
      const random = seededRandom(0, `quip timing ${rows}x${cols}`);
      const codes = Uint8Array.from({ length: rows * cols }, () => (random() * 2 ** bits) >>> 0);
      const colScale = new Float32Array(cols).fill(1);
      return quipMatrix(rows, cols, bits, codes, {
        scale: 1,
        colScale,
        seedU: 1,
        seedV: 2,
        mode: 1,
      });
    },
  };
}

/** The codebook formats timed: E8P's three codecs, the AQLM and VPTQ element formats, QuIP. */
export function codebookPerfFormats(): CodebookPerfFormat[] {
  const settings = { group: 0, symmetric: true, options: {} };
  const aqlm = elementFormats.names().filter((n) => n.startsWith("aqlm_")).map((name) => {
    const element = elementFormats.get(name);
    return {
      name,
      make: (rows: number, cols: number) =>
        element.kind === "coded" ? element.timingMatrix?.(settings, rows, cols) : undefined,
    };
  });
  const vptq = elementFormats.names().filter((n) => n.startsWith("vptq-"));
  return [
    e8pFormat(2),
    e8pFormat(3),
    e8pFormat(4),
    ...aqlm,
    ...[...vptq, "vptq-v8-k65536-256"].map(vptqFormat),
    quipFormat(2),
    quipFormat(3),
  ];
}
