/**
 * Integer weight quantization: unsigned codes with float16-rounded scales (or bfloat16 or float32
 * ones, `scaleDtype`) and integer zero points when asymmetric, per output channel, per group of
 * `group` input columns, or per tensor (`group: -1`). The conventions follow the GPTQ reference
 * quantizer (and llm-compressor's symmetric int scheme):
 *
 * - symmetric: `scale = max|w| / ((2^b − 1) / 2)`, zero point `2^(b−1)`, so codes span
 *   `[−2^(b−1), 2^(b−1) − 1]` around zero (int4: −8…7);
 * - symmetric with the restricted range (`range: restricted`, as compressed-tensors and torchao
 *   define symmetric integers): `scale = max|w| / (2^(b−1) − 1)`, codes in
 *   `[−(2^(b−1) − 1), 2^(b−1) − 1]` (int4: −7…7), the same zero point and decoding;
 * - asymmetric: `scale = (max − min) / (2^b − 1)` over a range that always includes 0,
 *   `zero = round(−min / scale)`;
 * - `w ≈ scale · (code − zero)`.
 *
 * @module
 */
import type { QuantizedMatrix, ScaleDtype } from "../../core/model.ts";
import { roundScale, SCALE_DTYPE_BITS, SCALE_DTYPE_MIN } from "./scale_dtype.ts";

/** How a matrix is quantized. */
export interface IntQuantConfig {
  bits: number;
  /**
   * Input columns per scale; 0 means one scale per output row (per channel), -1 one scale for
   * the whole matrix (per tensor).
   */
  group: number;
  symmetric: boolean;
  /** How scales are stored and rounded (default f16). */
  scaleDtype?: ScaleDtype;
  /**
   * Symmetric codes in the restricted range `±(2^(b−1) − 1)` with `scale = max|w| / (2^(b−1) − 1)`
   * (default false: the GPTQ range `−2^(b−1) … 2^(b−1) − 1`, `scale = 2·max|w| / (2^b − 1)`).
   */
  restricted?: boolean;
}

/** The smallest code a matrix may hold: 1 in the restricted symmetric range, else 0. */
export function minCode(restricted: boolean | undefined): number {
  return restricted ? 1 : 0;
}

/** `group` value meaning one scale (and zero point) for the whole matrix. */
export const PER_TENSOR = -1;

/** Thrown for an integer format the quantizer cannot produce. */
export class IntFormatError extends Error {
  override name = "IntFormatError";
}

/** Number of scale groups per row. */
export function groupsPerRow(m: Pick<QuantizedMatrix, "cols" | "groupSize">): number {
  return Math.ceil(m.cols / m.groupSize);
}

/**
 * Storage bits per weight of a `rows × cols` matrix in this format, counting codes, scales
 * (16 bits unless `scaleDtype` is f32) and (asymmetric) `bits`-bit zero points, as GPTQ-style
 * checkpoints pack them. `rows` matters only per tensor, where one scale serves every row.
 */
export function intBitsPerWeight(config: IntQuantConfig, cols: number, rows = 1): number {
  const perScale = SCALE_DTYPE_BITS[config.scaleDtype ?? "f16"] +
    (config.symmetric ? 0 : config.bits);
  if (config.group === PER_TENSOR) return config.bits + perScale / (rows * cols);
  const groupSize = config.group > 0 ? config.group : cols;
  const groups = Math.ceil(cols / groupSize);
  return (cols * config.bits + groups * perScale) / cols;
}

/** Storage bits of a whole quantized matrix (codes, scales and zero points). */
export function intMatrixBits(m: QuantizedMatrix): number {
  const config = {
    bits: m.bits,
    group: m.perTensor ? PER_TENSOR : m.groupSize,
    symmetric: m.symmetric,
    scaleDtype: m.scaleDtype,
  };
  return intBitsPerWeight(config, m.cols, m.rows) * m.rows * m.cols;
}

/**
 * Quantizes a dense `[rows][cols]` matrix by rounding to nearest (RTN), optionally shrinking each
 * group's range by `clip` (1 = no clipping).
 *
 * @example
 * ```ts
 * const q = quantizeInt(new Float32Array([1, -2, 3, 4]), 1, 4, { bits: 4, group: 0, symmetric: true });
 * dequantizeInt(q); // ≈ [1.07, -2.13, 3.2, 4]
 * ```
 */
export function quantizeInt(
  data: Float32Array,
  rows: number,
  cols: number,
  config: IntQuantConfig,
): QuantizedMatrix {
  const { bits, symmetric } = config;
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) {
    throw new IntFormatError(`Integer width ${bits} is not supported; use 2 to 8 bits`);
  }
  if ((config.group < 0 && config.group !== PER_TENSOR) || !Number.isInteger(config.group)) {
    throw new IntFormatError(
      `Group size ${config.group} must be a non-negative integer, or -1 for per tensor`,
    );
  }
  const scaleDtype = config.scaleDtype ?? "f16";
  const perTensor = config.group === PER_TENSOR;
  const groupSize = config.group > 0 ? Math.min(config.group, cols) : cols;
  const groups = Math.ceil(cols / groupSize);
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows * groups);
  const zeros = symmetric ? null : new Uint8Array(rows * groups);
  const maxq = (1 << bits) - 1;
  const restricted = restrictedRange(config);
  const minq = minCode(restricted);
  const tensorParams = perTensor
    ? groupParams(data, 0, rows * cols, bits, symmetric, 1, scaleDtype, restricted)
    : undefined;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const start = r * cols + g * groupSize;
      const end = r * cols + Math.min(cols, (g + 1) * groupSize);
      const { scale, zero } = tensorParams ??
        groupParams(data, start, end, bits, symmetric, 1, scaleDtype, restricted);
      scales[r * groups + g] = scale;
      if (zeros) zeros[r * groups + g] = zero;
      for (let i = start; i < end; i++) {
        const q = roundHalfEven(data[i]! / scale) + zero;
        codes[i] = q < minq ? minq : q > maxq ? maxq : q;
      }
    }
  }
  return {
    kind: "int",
    rows,
    cols,
    bits,
    groupSize,
    symmetric,
    codes,
    scales,
    zeros,
    scaleDtype,
    perTensor,
  };
}

/**
 * Whether `config` asks for the restricted symmetric range; throws {@linkcode IntFormatError} when
 * it asks for it with zero points (the restricted range is a symmetric scheme).
 */
export function restrictedRange(config: IntQuantConfig): boolean {
  if (config.restricted && !config.symmetric) {
    throw new IntFormatError(
      "The restricted range is symmetric; use symmetric: true or drop range: restricted",
    );
  }
  return config.restricted === true;
}

/**
 * Scale and zero point of one group `data[start, end)`, per the GPTQ reference quantizer (or, with
 * `restricted`, `max|w| / (2^(b−1) − 1)`), the scale rounded to `scaleDtype` (a scale that rounds
 * to 0 becomes the type's smallest positive value). An all-zero group gets scale 1 so that it
 * decodes to exact zeros.
 */
export function groupParams(
  data: Float32Array,
  start: number,
  end: number,
  bits: number,
  symmetric: boolean,
  shrink = 1,
  scaleDtype: ScaleDtype = "f16",
  restricted = false,
): { scale: number; zero: number } {
  const maxq = (1 << bits) - 1;
  let lo = 0;
  let hi = 0;
  for (let i = start; i < end; i++) {
    const v = data[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  lo *= shrink;
  hi *= shrink;
  if (symmetric) {
    const amax = Math.max(-lo, hi);
    if (amax === 0) return { scale: 1, zero: 1 << (bits - 1) };
    const unscaled = restricted ? amax / ((1 << (bits - 1)) - 1) : (2 * amax) / maxq;
    return {
      scale: roundScale(unscaled, scaleDtype) || SCALE_DTYPE_MIN[scaleDtype],
      zero: 1 << (bits - 1),
    };
  }
  if (hi === lo) return { scale: 1, zero: 0 };
  const scale = roundScale((hi - lo) / maxq, scaleDtype) || SCALE_DTYPE_MIN[scaleDtype];
  const zero = Math.min(maxq, Math.max(0, roundHalfEven(-lo / scale)));
  return { scale, zero };
}

/** Rounds to the nearest integer, ties to even (as `torch.round` does). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The zero point of group `index` (a stored one, or the fixed midpoint when symmetric). */
export function zeroAt(m: QuantizedMatrix, index: number): number {
  return m.zeros ? m.zeros[index]! : 1 << (m.bits - 1);
}

/** Decodes row `r` into `out` (length `cols`). */
export function dequantizeRow(m: QuantizedMatrix, r: number, out: Float32Array): void {
  const groups = groupsPerRow(m);
  const base = r * m.cols;
  for (let g = 0; g < groups; g++) {
    const scale = m.scales[r * groups + g]!;
    const zero = zeroAt(m, r * groups + g);
    const end = Math.min(m.cols, (g + 1) * m.groupSize);
    for (let c = g * m.groupSize; c < end; c++) out[c] = scale * (m.codes[base + c]! - zero);
  }
}

/** Decodes the whole matrix (for tests and writers; kernels decode inside the matmul). */
export function dequantizeInt(m: QuantizedMatrix): Float32Array {
  const out = new Float32Array(m.rows * m.cols);
  for (let r = 0; r < m.rows; r++) dequantizeRow(m, r, out.subarray(r * m.cols, (r + 1) * m.cols));
  return out;
}
