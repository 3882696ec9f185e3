/**
 * Scaled minifloats: FP8 (E4M3, E5M2), FP6 (E2M3, E3M2) or FP4 (E2M1) elements with one float
 * scale per output channel, per group of input columns, or per tensor, as row codecs.
 *
 * The recipe is compressed-tensors' symmetric float scheme (llm-compressor's `FP8` / `FP8_DYNAMIC`
 * weights, which vLLM serves as per-channel FP8; `calculate_qparams` and `_quantize` /
 * `_dequantize` in compressed_tensors/quantization), generalised to every element type:
 *
 * ```
 * scale  = max(amax / elem_max, 2^-23)      // float32; 2^-23 is torch.finfo(float32).eps
 * scale  = round(scale, scale_dtype)        // f32 (default), f16 or bf16, ties to even
 * code_i = saturating_cast(x_i / scale)     // float32 quotient; clamp to ±elem_max, then RNE
 * x_i'   = value(code_i) · scale            // rounded to float32
 * ```
 *
 * where `amax` is the absolute maximum of the row (per channel), of the group of `group`
 * columns (the last group of a row may be short), or of the whole matrix (per tensor, the scale
 * is then the matrix's float32 `tensorScale`). Per group with FP4 is the bitsandbytes layout
 * (one absmax per block of 64 by default, `quantize_4bit`), but on the OCP E2M1 grid
 * (±{0, 0.5, …, 6}) scaled by absmax / 6, not bitsandbytes' own FP4 code table. A scale rounded
 * to f16/bf16 may fall below amax / elem_max; the saturating cast then clamps the largest
 * magnitudes to ±elem_max, as the stored scale dictates.
 *
 * Row layout: the row's scales (little-endian, in `scale_dtype`; none per tensor), then the
 * element codes packed LSB-first (`packCodes`: FP4 low nibble first, FP6 four codes in three
 * bytes), padded to a whole byte. Non-finite weights throw {@linkcode UnrepresentableValueError}.
 *
 * @module
 */
import type { ScaleDtype } from "../../core/model.ts";
import type { RowCodec } from "../../core/coded.ts";
import {
  FP4_E2M1,
  FP6_E2M3,
  FP6_E3M2,
  FP8_E4M3,
  FP8_E5M2,
  type Minifloat,
  UnrepresentableValueError,
} from "./minifloat.ts";
import { packCodes, unpackCodes } from "./mx.ts";
import { checkRowBytes } from "./row_codecs.ts";
import { readScale, roundScale, SCALE_DTYPE_BITS, writeScale } from "./scale_dtype.ts";

/** The element types a scaled minifloat can have, by their `Minifloat` name. */
export const SCALED_ELEMENTS: readonly Minifloat[] = [
  FP8_E4M3,
  FP8_E5M2,
  FP6_E2M3,
  FP6_E3M2,
  FP4_E2M1,
];

/** `group` value for one scale per output channel (row). */
export const PER_CHANNEL = 0;
/** `group` value for one scale per tensor. */
export const PER_TENSOR = -1;
/** Smallest scale (compressed-tensors clamps scales to `torch.finfo(torch.float32).eps`). */
export const MIN_SCALE = 2 ** -23;

/** A scaled-minifloat configuration. */
export interface ScaledMinifloatConfig {
  element: Minifloat;
  /** Columns per scale; {@linkcode PER_CHANNEL} (0) or {@linkcode PER_TENSOR} (-1). */
  group: number;
  /** How group and channel scales are stored; a per-tensor scale is always f32. */
  scaleDtype: ScaleDtype;
}

/** Thrown for a configuration no codec can be made for. */
export class ScaledMinifloatConfigError extends Error {
  override name = "ScaledMinifloatConfigError";
}

/**
 * Codec name of a configuration: `<element>-ch-<dtype>` per channel, `<element>-g<group>-<dtype>`
 * per group, `<element>-pt` per tensor (e.g. `fp8_e4m3-ch-f32`, `fp4_e2m1-g64-bf16`).
 */
export function scaledMinifloatName(config: ScaledMinifloatConfig): string {
  const { element, group, scaleDtype } = config;
  if (group === PER_TENSOR) return `${element.name}-pt`;
  return `${element.name}-${group === PER_CHANNEL ? "ch" : `g${group}`}-${scaleDtype}`;
}

const SATURATE = { saturate: true } as const;

/** The stored scale for a block whose absolute maximum is `amax`. */
export function scaledMinifloatScale(
  amax: number,
  element: Minifloat,
  scaleDtype: ScaleDtype,
): number {
  const scale = roundScale(Math.max(Math.fround(amax / element.max), MIN_SCALE), scaleDtype);
  if (!Number.isFinite(scale)) {
    throw new UnrepresentableValueError(
      `${element.name}: the scale for absolute maximum ${amax} overflows ${scaleDtype}`,
    );
  }
  return scale;
}

function absMax(values: Float32Array, start: number, end: number, name: string): number {
  let amax = 0;
  for (let i = start; i < end; i++) {
    const a = Math.abs(values[i]!);
    if (!Number.isFinite(a)) {
      throw new UnrepresentableValueError(`${name} cannot encode ${values[i]} at index ${i}`);
    }
    if (a > amax) amax = a;
  }
  return amax;
}

/** A row codec for a scaled-minifloat configuration (see the module notes for the recipe). */
export function scaledMinifloatCodec(config: ScaledMinifloatConfig): RowCodec {
  const { element, group, scaleDtype } = config;
  if (!Number.isInteger(group) || group < PER_TENSOR) {
    throw new ScaledMinifloatConfigError(
      `Group ${group} must be a positive integer, 0 (per channel) or -1 (per tensor)`,
    );
  }
  const perTensor = group === PER_TENSOR;
  if (perTensor && scaleDtype !== "f32") {
    throw new ScaledMinifloatConfigError(
      `A per-tensor scale is stored as f32; scale type "${scaleDtype}" does not apply`,
    );
  }
  const name = scaledMinifloatName(config);
  const scaleBytes = perTensor ? 0 : SCALE_DTYPE_BITS[scaleDtype] / 8;
  const bits = element.bits;
  const table = new Float32Array(1 << bits);
  for (let c = 0; c < table.length; c++) table[c] = element.decode(c);
  const groupSize = (cols: number) => (group > 0 ? group : cols);
  const scaleCount = (cols: number) => (perTensor ? 0 : Math.ceil(cols / groupSize(cols)));
  const rowBytes = (cols: number) => scaleCount(cols) * scaleBytes + Math.ceil((cols * bits) / 8);
  return {
    name,
    // Any row length works: the last group of a row may be short (nothing is padded).
    blockSize: 1,
    rowBytes,
    bitsPerWeight: (cols) => (8 * rowBytes(cols)) / cols,
    encodeRow(values, out, tensorScale) {
      const cols = values.length;
      checkRowBytes(name, out, rowBytes(cols), cols);
      const codes = new Uint8Array(cols);
      const size = groupSize(cols);
      for (let start = 0, g = 0; start < cols; start += size, g++) {
        const end = Math.min(cols, start + size);
        const amax = absMax(values, start, end, name);
        let scale = tensorScale;
        if (!perTensor) {
          scale = scaledMinifloatScale(amax, element, scaleDtype);
          writeScale(out, g * scaleBytes, scale, scaleDtype);
        }
        for (let i = start; i < end; i++) {
          codes[i] = element.encode(Math.fround(values[i]! / scale), SATURATE);
        }
      }
      out.set(packCodes(codes, bits), scaleCount(cols) * scaleBytes);
    },
    decodeRow(bytes, out, tensorScale) {
      const cols = out.length;
      checkRowBytes(name, bytes, rowBytes(cols), cols);
      const scales = scaleCount(cols) * scaleBytes;
      const codes = unpackCodes(bytes.subarray(scales), bits, cols);
      const size = groupSize(cols);
      for (let start = 0, g = 0; start < cols; start += size, g++) {
        const scale = perTensor ? tensorScale : readScale(bytes, g * scaleBytes, scaleDtype);
        const end = Math.min(cols, start + size);
        for (let i = start; i < end; i++) out[i] = Math.fround(table[codes[i]!]! * scale);
      }
    },
    tensorScale(data) {
      if (!perTensor) return 1;
      return scaledMinifloatScale(absMax(data, 0, data.length, name), element, "f32");
    },
  };
}
