/**
 * Bit-exact codecs for small floating-point element formats: FP8 (E4M3, E5M2), FP6 (E2M3,
 * E3M2) and FP4 (E2M1), as defined by the OCP 8-bit Floating Point Specification (OFP8) v1.0
 * and the OCP Microscaling Formats (MX) Specification v1.0.
 *
 * Encoding rounds the exact value of its argument to the nearest representable value, ties to
 * even mantissa, with subnormals. Overflow follows OFP8 / MX v1.0:
 *
 * | format | overflow, `saturate: false` (default) | overflow, `saturate: true` | NaN in |
 * | ------ | ------------------------------------- | -------------------------- | ------ |
 * | E4M3   | NaN (no infinities; as ml_dtypes and `torch.float8_e4m3fn` casts) | ±448 | NaN |
 * | E5M2   | ±inf (IEEE-like)                       | ±57344                     | NaN    |
 * | E2M3, E3M2, E2M1 | ±max (no inf or NaN encodings, always saturating) | ±max   | throws |
 *
 * "Overflow" means the value rounds (ties to even) past the largest finite value; ±inf inputs
 * overflow too. Saturating mode is the one quantizers use (PTX `cvt.satfinite`, torchao's clamp
 * before the cast). FP6/FP4 have no NaN: OCP leaves the conversion of NaN implementation-defined,
 * and any value we picked would silently corrupt a weight, so encoding NaN throws
 * {@linkcode UnrepresentableValueError}. NaN encodes to the positive canonical NaN code (0x7F for
 * E4M3, 0x7E for E5M2, as ml_dtypes), since a JavaScript NaN has no dependable sign.
 * `-0` and negative values that round to zero encode with the sign bit set.
 *
 * @module
 */

/** Which special values a format reserves. */
export type SpecialValues =
  /** IEEE 754 style: the top exponent holds ±inf (mantissa 0) and NaNs (E5M2). */
  | "ieee"
  /** No infinities; only the all-ones magnitude is NaN (the OCP "fn" E4M3). */
  | "nan-only"
  /** Every code is a finite number (FP6, FP4). */
  | "none";

/** Parameters of a sign-exponent-mantissa format. */
export interface MinifloatSpec {
  name: string;
  exponentBits: number;
  mantissaBits: number;
  bias: number;
  specials: SpecialValues;
}

/** Options for encoding. */
export interface EncodeOptions {
  /**
   * Clamp overflowing values (and ±inf) to ±max instead of producing NaN / inf. Formats with no
   * inf or NaN always saturate. Default false.
   */
  saturate?: boolean;
}

/** Thrown when a value has no encoding in a format (NaN in a format without NaN). */
export class UnrepresentableValueError extends Error {
  override name = "UnrepresentableValueError";
}

/** Thrown when a code is not an integer in `[0, 2^bits)`. */
export class InvalidCodeError extends Error {
  override name = "InvalidCodeError";
}

// Reads the binary exponent of a double from its bits; exact where Math.log2 may be off by one.
const f64 = new Float64Array(1);
const f64Words = new Uint32Array(f64.buffer);
const HIGH_WORD = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;

/**
 * floor(log2(a)) for a positive normal double, read exactly from its exponent bits; -1023 for 0
 * and subnormal doubles (far below any format's grid).
 */
export function floorLog2(a: number): number {
  f64[0] = a;
  return ((f64Words[HIGH_WORD]! >>> 20) & 0x7ff) - 1023;
}

/** A small float format with encode/decode to unsigned integer codes. */
export class Minifloat {
  /** Format name, e.g. `fp8_e4m3`. */
  readonly name: string;
  /** Bits of one code: 1 sign + exponent + mantissa. */
  readonly bits: number;
  /** Storage cost of one element in bits (no scales). */
  readonly bitsPerWeight: number;
  readonly exponentBits: number;
  readonly mantissaBits: number;
  readonly bias: number;
  readonly specials: SpecialValues;
  /** Largest finite value. */
  readonly max: number;
  /** Smallest positive (subnormal) value. */
  readonly minSubnormal: number;
  /** Exponent of the smallest normal value (`1 - bias`). */
  readonly minExponent: number;
  /** Code of the largest finite magnitude (sign bit clear). */
  readonly maxFiniteCode: number;
  /** Code a positive NaN encodes to, or undefined when the format has no NaN. */
  readonly nanCode: number | undefined;
  /** Code of +inf, or undefined when the format has no infinities. */
  readonly infCode: number | undefined;
  readonly #signBit: number;
  readonly #table: Float64Array;
  /** Magnitudes at or above this overflow whatever the rounding: 2^(exponent of max + 1). */
  readonly #overflowBound: number;
  readonly #pow2: Float64Array;

  constructor(spec: MinifloatSpec) {
    const { exponentBits: e, mantissaBits: m } = spec;
    this.name = spec.name;
    this.exponentBits = e;
    this.mantissaBits = m;
    this.bias = spec.bias;
    this.specials = spec.specials;
    this.bits = 1 + e + m;
    this.bitsPerWeight = this.bits;
    this.#signBit = 1 << (e + m);
    this.minExponent = 1 - spec.bias;
    const allOnes = this.#signBit - 1;
    const topExponent = ((1 << e) - 1) << m;
    switch (spec.specials) {
      case "ieee":
        this.maxFiniteCode = topExponent - 1;
        this.infCode = topExponent;
        this.nanCode = topExponent | (1 << (m - 1));
        break;
      case "nan-only":
        this.maxFiniteCode = allOnes - 1;
        this.infCode = undefined;
        this.nanCode = allOnes;
        break;
      case "none":
        this.maxFiniteCode = allOnes;
        this.infCode = undefined;
        this.nanCode = undefined;
    }
    // Powers of two from the subnormal quantum up to the largest exponent, indexed from 0.
    const maxExp = (1 << e) - 1 - spec.bias;
    this.#pow2 = new Float64Array(maxExp - this.minExponent + 2);
    for (let i = 0; i < this.#pow2.length; i++) {
      this.#pow2[i] = Math.pow(2, this.minExponent - m + i);
    }
    this.#table = new Float64Array(1 << this.bits);
    for (let c = 0; c < this.#table.length; c++) this.#table[c] = this.#decodeUnchecked(c);
    this.max = this.#table[this.maxFiniteCode]!;
    this.minSubnormal = this.#table[1]!;
    this.#overflowBound = Math.pow(2, floorLog2(this.max) + 1);
  }

  /** Encodes a number to its code (an unsigned integer below `2^bits`). */
  encode(x: number, options?: EncodeOptions): number {
    const saturate = options?.saturate ?? false;
    if (Number.isNaN(x)) {
      if (this.nanCode === undefined) {
        throw new UnrepresentableValueError(`${this.name} has no NaN: cannot encode ${x}`);
      }
      return this.nanCode;
    }
    const sign = x < 0 || Object.is(x, -0) ? this.#signBit : 0;
    const magnitude = this.#encodeMagnitude(Math.abs(x));
    if (magnitude <= this.maxFiniteCode) return sign | magnitude;
    if (saturate || this.specials === "none") return sign | this.maxFiniteCode;
    if (this.specials === "ieee") return sign | this.infCode!;
    return sign | this.nanCode!;
  }

  /** Decodes a code to its value (NaN, ±inf and -0 included). */
  decode(code: number): number {
    if (!Number.isInteger(code) || code < 0 || code >= this.#table.length) {
      throw new InvalidCodeError(
        `${this.name} code ${code} is not an integer in [0, 2^${this.bits})`,
      );
    }
    return this.#table[code]!;
  }

  /** Encodes every value to one code per byte. */
  encodeArray(values: ArrayLike<number>, options?: EncodeOptions): Uint8Array {
    const out = new Uint8Array(values.length);
    for (let i = 0; i < values.length; i++) out[i] = this.encode(values[i]!, options);
    return out;
  }

  /** Decodes one code per byte. */
  decodeArray(codes: Uint8Array): Float32Array {
    const out = new Float32Array(codes.length);
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i]!;
      if (c >= this.#table.length) {
        throw new InvalidCodeError(
          `${this.name} code ${c} at index ${i} is not below 2^${this.bits}`,
        );
      }
      out[i] = this.#table[c]!;
    }
    return out;
  }

  /**
   * Code magnitude for `a >= 0` (may be +inf), rounded to nearest, ties to even. Results above
   * `maxFiniteCode` mean overflow.
   */
  #encodeMagnitude(a: number): number {
    if (a >= this.#overflowBound) return Infinity;
    const m = this.mantissaBits;
    const e = Math.max(floorLog2(a), this.minExponent);
    const quantum = this.#pow2[e - this.minExponent]!;
    // a / quantum is exact (a power-of-two scaling): integer part and fraction are exact too.
    const n = a / quantum;
    let r = Math.floor(n);
    const frac = n - r;
    if (frac > 0.5 || (frac === 0.5 && (r & 1) === 1)) r++;
    // Subnormals (e = minExponent, r < 2^m) and normals share this form; a carry out of the
    // mantissa (r = 2^(m+1)) lands on the next exponent by itself.
    return (e - this.minExponent) * (1 << m) + r;
  }

  #decodeUnchecked(code: number): number {
    const m = this.mantissaBits;
    const sign = code & this.#signBit ? -1 : 1;
    const magnitude = code & (this.#signBit - 1);
    if (this.nanCode !== undefined) {
      if (this.specials === "nan-only" && magnitude === this.nanCode) return NaN;
      if (this.specials === "ieee" && magnitude >= this.infCode!) {
        return magnitude === this.infCode ? sign * Infinity : NaN;
      }
    }
    const exponentField = magnitude >> m;
    const mantissa = magnitude & ((1 << m) - 1);
    const value = exponentField === 0
      ? mantissa * Math.pow(2, this.minExponent - m)
      : ((1 << m) + mantissa) * Math.pow(2, exponentField - this.bias - m);
    return sign * value;
  }
}

/** FP8 E4M3 as OCP OFP8 "E4M3" / `float8_e4m3fn`: bias 7, max 448, no inf, NaN = S.1111.111. */
export const FP8_E4M3: Minifloat = new Minifloat({
  name: "fp8_e4m3",
  exponentBits: 4,
  mantissaBits: 3,
  bias: 7,
  specials: "nan-only",
});

/** FP8 E5M2 (OCP OFP8 / `float8_e5m2`): bias 15, max 57344, ±inf and NaNs as in IEEE 754. */
export const FP8_E5M2: Minifloat = new Minifloat({
  name: "fp8_e5m2",
  exponentBits: 5,
  mantissaBits: 2,
  bias: 15,
  specials: "ieee",
});

/** FP6 E2M3 (OCP MX v1.0): bias 1, max 7.5, no inf or NaN. */
export const FP6_E2M3: Minifloat = new Minifloat({
  name: "fp6_e2m3",
  exponentBits: 2,
  mantissaBits: 3,
  bias: 1,
  specials: "none",
});

/** FP6 E3M2 (OCP MX v1.0): bias 3, max 28, no inf or NaN. */
export const FP6_E3M2: Minifloat = new Minifloat({
  name: "fp6_e3m2",
  exponentBits: 3,
  mantissaBits: 2,
  bias: 3,
  specials: "none",
});

/** FP4 E2M1 (OCP MX v1.0): bias 1, values ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}, no inf or NaN. */
export const FP4_E2M1: Minifloat = new Minifloat({
  name: "fp4_e2m1",
  exponentBits: 2,
  mantissaBits: 1,
  bias: 1,
  specials: "none",
});
