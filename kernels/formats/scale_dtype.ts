/**
 * The float types a quantization scale can be stored in (`scale_dtype: f16 | bf16 | f32` in a
 * suite format): rounding to them, their storage size, and little-endian reads and writes.
 *
 * Rounding is to nearest, ties to even, from the float32 value the quantizer computed (a bf16
 * scale is a float32 tensor cast with `.to(torch.bfloat16)`); f16 keeps the existing integer
 * quantizer's direct rounding of its scale to half.
 *
 * @module
 */
import type { ScaleDtype } from "../../core/model.ts";
import { bf16ToF32, f16ToF32, f32ToF16 } from "./gguf/numeric.ts";
import { f32ToBf16 } from "./gguf/blocks.ts";

/** The scale types a suite may name. */
export const SCALE_DTYPES: readonly ScaleDtype[] = ["f16", "bf16", "f32"];

/** Storage bits of one scale. */
export const SCALE_DTYPE_BITS: Readonly<Record<ScaleDtype, number>> = {
  f16: 16,
  bf16: 16,
  f32: 32,
};

/** Smallest positive value of each type (a scale that would round to 0 becomes this). */
export const SCALE_DTYPE_MIN: Readonly<Record<ScaleDtype, number>> = {
  f16: 2 ** -24,
  bf16: 2 ** -133,
  f32: 2 ** -149,
};

/** Whether `value` names a scale type. */
export function isScaleDtype(value: unknown): value is ScaleDtype {
  return SCALE_DTYPES.includes(value as ScaleDtype);
}

/** `x` rounded to the nearest value of `dtype` (ties to even; overflow gives ±inf). */
export function roundScale(x: number, dtype: ScaleDtype): number {
  switch (dtype) {
    case "f16":
      return Math.f16round(x);
    case "bf16":
      return bf16ToF32(f32ToBf16(Math.fround(x)));
    case "f32":
      return Math.fround(x);
  }
}

/** Writes `value` (already representable in `dtype`) little-endian at `offset`. */
export function writeScale(
  out: Uint8Array,
  offset: number,
  value: number,
  dtype: ScaleDtype,
): void {
  if (dtype === "f32") {
    new DataView(out.buffer, out.byteOffset, out.byteLength).setFloat32(offset, value, true);
    return;
  }
  const bits = dtype === "f16" ? f32ToF16(value) : f32ToBf16(value);
  out[offset] = bits & 0xff;
  out[offset + 1] = bits >> 8;
}

/** Reads a little-endian scale of `dtype` at `offset`. */
export function readScale(bytes: Uint8Array, offset: number, dtype: ScaleDtype): number {
  if (dtype === "f32") {
    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getFloat32(offset, true);
  }
  const bits = bytes[offset]! | (bytes[offset + 1]! << 8);
  return dtype === "f16" ? f16ToF32(bits) : bf16ToF32(bits);
}
