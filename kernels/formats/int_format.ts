/**
 * The `int` format module: {@linkcode QuantizedMatrix} weights, unsigned codes with scales (f16,
 * bf16 or f32) and optional integer zero points per channel, group or tensor (`int.ts`). Its grid
 * fixes scale and zero point per group as the GPTQ reference quantizer does (`groupParams`); the
 * WebGPU kernels take 2–8-bit codes with power-of-two groups of at least 4 and f16 zero points.
 *
 * @module
 */
import type { QuantizedMatrix, ScaleDtype } from "../../core/model.ts";
import {
  badScaleDtype,
  checked,
  type FormatSettings,
  type IntElementFormat,
  scaleDtypeOf,
} from "./element_format.ts";
import { asInt, type GroupGrid, type WeightFormat, WrongFormatError } from "./format.ts";
import type { GpuPlan, ScaleKind } from "./gpu_layout.ts";
import { putBits } from "./gpu_layout.ts";
import {
  dequantizeRow,
  groupParams,
  groupsPerRow,
  intBitsPerWeight,
  intMatrixBits,
  minCode,
  PER_TENSOR,
  quantizeInt,
  roundHalfEven,
  zeroAt,
} from "./int.ts";
import { bf16ToF32 } from "./gguf/numeric.ts";
import { f32ToBf16 } from "./gguf/blocks.ts";

/** The IEEE binary16 bits of a value that is exactly representable in float16. */
function f16Bits(x: number): number {
  const buf = new DataView(new ArrayBuffer(2));
  // `setFloat16` rounds; the callers check exactness first.
  buf.setFloat16(0, x, true);
  return buf.getUint16(0, true);
}

/** log2 of a power of two, or -1. */
function log2Exact(n: number): number {
  const l = Math.log2(n);
  return Number.isInteger(l) ? l : -1;
}

/** Scale kinds the integer layout uses. */
const INT_SCALES: ReadonlySet<string> = new Set<ScaleKind>(["f16", "bf16", "f32", "f16zero"]);

/** The scale storage of an integer matrix's kernels, or why it has none. */
function intScale(m: QuantizedMatrix): ScaleKind | string {
  if (m.bits < 2 || m.bits > 8) return `${m.bits}-bit codes`;
  if (groupsPerRow(m) > 1 && log2Exact(m.groupSize) < 2) {
    return `group size ${m.groupSize} is not a power of two of at least 4`;
  }
  const dtype = m.scaleDtype ?? "f16";
  if (m.zeros && dtype !== "f16") return `zero points with ${dtype} scales`;
  const exact = dtype === "f16"
    ? (s: number) => Math.f16round(s) === s
    : dtype === "bf16"
    ? (s: number) => bf16ToF32(f32ToBf16(s)) === s
    : (s: number) => Math.fround(s) === s;
  for (const s of m.scales) if (!exact(s)) return `scale ${s} is not a ${dtype} value`;
  return m.zeros ? "f16zero" : dtype;
}

/** Codes as `bits`-bit chunks; scales (with f16 zero points when asymmetric) per group. */
function intGpu(m: QuantizedMatrix): GpuPlan | string {
  const scale = intScale(m);
  if (!INT_SCALES.has(scale)) return scale;
  const G = groupsPerRow(m);
  const layout = {
    element: "uint" as const,
    bits: m.bits,
    zero: m.zeros ? 0 : 1 << (m.bits - 1),
    scale: scale as ScaleKind,
    gshift: G === 1 ? 31 : log2Exact(m.groupSize),
  };
  const f32Bits = new Uint32Array(m.scales.buffer, m.scales.byteOffset, m.scales.length);
  return {
    layout,
    tensorScale: 1,
    codes(r, out) {
      const base = r * m.cols;
      for (let c = 0; c < m.cols; c++) putBits(out, c * m.bits, m.bits, m.codes[base + c]!);
    },
    scales(r, groups, put) {
      for (let g = 0; g < Math.min(G, groups); g++) {
        const i = r * G + g;
        const s = m.scales[i]!;
        if (layout.scale === "f16zero") put(g, (f16Bits(s) | (f16Bits(zeroAt(m, i)) << 16)) >>> 0);
        else if (layout.scale === "f16") put(g, f16Bits(s));
        else if (layout.scale === "bf16") put(g, f32ToBf16(s));
        else put(g, f32Bits[i]!);
      }
    },
  };
}

/** Columns per group for a suite `group` (0 per channel, -1 per tensor). */
export function groupColumns(group: number, cols: number): number {
  return group > 0 ? Math.min(group, cols) : cols;
}

function intGrid(
  bits: number,
  group: number,
  symmetric: boolean,
  scaleDtype: ScaleDtype,
  restricted: boolean,
  rows: number,
  cols: number,
): GroupGrid {
  const perTensor = group === PER_TENSOR;
  const groupSize = groupColumns(group, cols);
  const groups = Math.ceil(cols / groupSize);
  const scales = new Float32Array(rows * groups);
  const zeros = new Uint8Array(rows * groups);
  const codes = new Uint8Array(rows * cols);
  const maxq = (1 << bits) - 1;
  const minq = minCode(restricted);
  const fitRows = (w: Float64Array, c0: number, c1: number) => {
    const g = Math.floor(c0 / groupSize);
    const row = new Float32Array(c1 - c0);
    for (let r = 0; r < rows; r++) {
      for (let c = c0; c < c1; c++) row[c - c0] = w[r * cols + c]!;
      const p = groupParams(row, 0, row.length, bits, symmetric, 1, scaleDtype, restricted);
      scales[r * groups + g] = p.scale;
      zeros[r * groups + g] = p.zero;
    }
  };
  return {
    groupSize,
    init(w) {
      if (perTensor) {
        const all = Float32Array.from(w);
        const p = groupParams(all, 0, w.length, bits, symmetric, 1, scaleDtype, restricted);
        scales.fill(p.scale);
        zeros.fill(p.zero);
      } else if (groupSize === cols) {
        fitRows(w, 0, cols);
      }
    },
    fit: fitRows,
    round(r, c, w) {
      const i = r * groups + Math.floor(c / groupSize);
      const scale = scales[i]!;
      const zero = zeros[i]!;
      const q = Math.min(maxq, Math.max(minq, roundHalfEven(w / scale) + zero));
      codes[r * cols + c] = q;
      return scale * (q - zero);
    },
    build(): QuantizedMatrix {
      return {
        kind: "int",
        rows,
        cols,
        bits,
        groupSize,
        symmetric,
        codes,
        scales,
        zeros: symmetric ? null : zeros,
        scaleDtype,
        perTensor,
      };
    },
  };
}

/** Values of the `range` setting of integer formats. */
export const INT_RANGES = ["full", "restricted"] as const;

/** Why `settings.options.range` does not fit an integer format, or undefined. */
function badRange(settings: FormatSettings): string | undefined {
  const range = settings.options.range;
  if (range === undefined || range === "full") return undefined;
  if (range !== "restricted") {
    return `range ${JSON.stringify(range)} is not one of ${INT_RANGES.join(", ")}`;
  }
  if (!settings.symmetric) {
    return "range: restricted is a symmetric scheme; use symmetric: true or drop range";
  }
  return undefined;
}

/**
 * `int<bits>`: integer codes + scales, `scale_dtype` default f16, `range` full (GPTQ's
 * `2·max|w| / (2^b − 1)`) or restricted (`max|w| / (2^(b−1) − 1)`), RTN by `quantizeInt`.
 */
function intElement(bits: number): IntElementFormat {
  const format: IntElementFormat = {
    name: `int${bits}`,
    kind: "int",
    bits,
    description: `${bits}-bit integer codes + scales (per channel, group or tensor)`,
    unsupported: (settings) => badScaleDtype(settings) ?? badRange(settings),
    intConfig: (settings) => ({
      bits,
      group: settings.group,
      symmetric: settings.symmetric,
      scaleDtype: scaleDtypeOf(settings, "f16"),
      ...(settings.options.range === "restricted" ? { restricted: true } : {}),
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

/** Integer codes with scales and zero points (`int2` … `int8` in suites). */
export const INT_FORMAT: WeightFormat = {
  name: "int",
  description: "integer codes + f16/bf16/f32 scales (and zero points) per channel, group or tensor",
  // Integer matrices are no rows of a codec; `int_test.ts` bounds their rounding.
  codecs: [],
  elements: [intElement(8), intElement(6), intElement(4), intElement(3), intElement(2)],
  bounds: [],
  owns: (codec) => codec === "int",
  decodeRow: (m, r, out) => dequantizeRow(asInt("int", m), r, out),
  bits: (m) => intMatrixBits(asInt("int", m)),
  gpu: (m) => intGpu(asInt("int", m)),
  grid(element, settings, rows, cols) {
    if (element.kind !== "int") {
      throw new WrongFormatError(`Format "int" has no grid for "${element.name}"`);
    }
    const { bits, scaleDtype = "f16", restricted = false } = element.intConfig(settings);
    return intGrid(bits, settings.group, settings.symmetric, scaleDtype, restricted, rows, cols);
  },
};
