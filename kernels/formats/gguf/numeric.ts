/**
 * Scalar conversions and rounding rules that ggml's block codecs rely on, reproduced exactly:
 * IEEE half and bfloat16 to float32, float32 to half with round-to-nearest-even, ggml's
 * `nearest_int` (ties to even), C's `roundf` (ties away from zero) and the E8M0 scale of MXFP4.
 *
 * Float32 arithmetic is emulated with `Math.fround` after every operation: for one `+ - * /` or
 * `sqrt` of float32 operands, the double result rounded to float32 equals the float32 result
 * (double has more than 2·24+2 significand bits), so `fround(a * b)` is exactly C's `a * b`.
 *
 * @module
 */

const f16Scratch = new Float16Array(1);
const f16Bits = new Uint16Array(f16Scratch.buffer);

/** Every half value as float32, indexed by its 16-bit pattern (built once, 256 KiB). */
const F16_TO_F32: Float32Array = (() => {
  const all = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i;
  return Float32Array.from(new Float16Array(all.buffer));
})();

/** Float32 value of the IEEE half with bit pattern `bits` (exact, as ggml's `GGML_FP16_TO_FP32`). */
export function f16ToF32(bits: number): number {
  return F16_TO_F32[bits & 0xffff]!;
}

/**
 * Bit pattern of the half nearest to `x` (round to nearest, ties to even; overflow to infinity),
 * as ggml's `GGML_FP32_TO_FP16`. `x` should already be a float32 value: a double is rounded once
 * to half, which can differ from rounding it to float32 first.
 */
export function f32ToF16(x: number): number {
  f16Scratch[0] = x;
  return f16Bits[0]!;
}

const bf16Float = new Float32Array(1);
const bf16Word = new Uint32Array(bf16Float.buffer);

/** Float32 value of the bfloat16 with bit pattern `bits`: the top half of a float32. */
export function bf16ToF32(bits: number): number {
  bf16Word[0] = (bits & 0xffff) << 16;
  return bf16Float[0]!;
}

/**
 * ggml's `nearest_int`: adds 1.5·2^23 in float32 so the FPU rounds to an integer, ties to even.
 * Valid for |x| ≤ 4194303, as ggml asserts; the double computation below is the same rounding.
 */
export function nearestInt(x: number): number {
  const floor = Math.floor(x);
  const frac = x - floor;
  if (frac > 0.5) return floor + 1;
  if (frac < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** C's `roundf`: nearest integer, halfway cases away from zero. */
export function roundHalfAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/**
 * ggml's `GGML_E8M0_TO_FP32_HALF`: the MXFP4 block scale 2^(e-127) halved, because ggml stores
 * the E2M1 code points doubled (`kvalues_mxfp4`) so they are integers.
 */
export function e8m0ToF32Half(e: number): number {
  return Math.pow(2, (e & 0xff) - 128);
}
