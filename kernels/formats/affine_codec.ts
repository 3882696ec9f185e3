/**
 * Integer codes with a float scale and a float zero point per group — HQQ's layout
 * (`w = (code − zero) · scale`, scale and zero in f16, the zero not rounded to an integer) — as
 * a row codec, so every backend decodes it like any coded format.
 *
 * Row layout: for each group its scale then its zero (f16, little-endian), then the codes packed
 * LSB-first (`packCodes`), padded to a whole byte. Codec name: `hqq-int<b>-g<group>` or
 * `hqq-int<b>-ch` (one group per row).
 *
 * @module
 */
import type { RowCodec } from "../../core/coded.ts";
import { packCodes, unpackCodes } from "./mx.ts";
import { checkRowBytes } from "./row_codecs.ts";
import { readScale, writeScale } from "./scale_dtype.ts";
import { roundHalfEven } from "./int.ts";

/** One group's parameters: `w = (code − zero) · scale`. */
export interface AffineGroup {
  scale: number;
  zero: number;
}

/**
 * HQQ's starting parameters of the group `values[c0, c1)` (`Quantizer.quantize`): the inverse
 * scale `(2^b − 1) / (max − min)` clamped at 2·10⁴ and `zero = −min · inverseScale`, rounded for
 * 4 bits (`round_zero`, the library's default for 4-bit weights).
 */
export function hqqInitial(
  values: ArrayLike<number>,
  c0: number,
  c1: number,
  bits: number,
): { inverseScale: number; zero: number } {
  let lo = Infinity;
  let hi = -Infinity;
  for (let c = c0; c < c1; c++) {
    lo = Math.min(lo, values[c]!);
    hi = Math.max(hi, values[c]!);
  }
  // A constant group divides by zero; the clamp turns the infinity into 2e4, as in torch.
  const inverseScale = Math.min(((1 << bits) - 1) / (hi - lo), 2e4);
  const zero = -lo * inverseScale;
  return { inverseScale, zero: bits === 4 ? roundHalfEven(zero) : zero };
}

/** The affine row codec for `bits`-bit codes in groups of `group` (0: one group per row). */
export function affineCodec(bits: number, group: number): RowCodec & {
  /** Writes a row from its codes and group parameters (rounded to f16 as stored). */
  encodeCodes(codes: Uint8Array, groups: AffineGroup[], out: Uint8Array): void;
} {
  if (
    !(Number.isInteger(bits) && bits >= 1 && bits <= 8) || !(Number.isInteger(group) && group >= 0)
  ) {
    throw new RangeError(`Affine codec needs 1–8 bits and a group ≥ 0, got ${bits} and ${group}`);
  }
  const name = `hqq-int${bits}-${group > 0 ? `g${group}` : "ch"}`;
  const size = (cols: number) => (group > 0 ? group : cols);
  const groupsOf = (cols: number) => Math.ceil(cols / size(cols));
  const rowBytes = (cols: number) => groupsOf(cols) * 4 + Math.ceil((cols * bits) / 8);
  const maxq = (1 << bits) - 1;
  const encodeCodes = (codes: Uint8Array, groups: AffineGroup[], out: Uint8Array) => {
    const cols = codes.length;
    checkRowBytes(name, out, rowBytes(cols), cols);
    groups.forEach(({ scale, zero }, g) => {
      writeScale(out, 4 * g, Math.f16round(scale), "f16");
      writeScale(out, 4 * g + 2, Math.f16round(zero), "f16");
    });
    out.set(packCodes(codes, bits), groupsOf(cols) * 4);
  };
  return {
    name,
    blockSize: 1,
    rowBytes,
    bitsPerWeight: (cols) => (8 * rowBytes(cols)) / cols,
    encodeCodes,
    /** HQQ's parameters before optimisation ({@linkcode hqqInitial}), codes rounded to them. */
    encodeRow(values, out) {
      const cols = values.length;
      const codes = new Uint8Array(cols);
      const groups: AffineGroup[] = [];
      for (let c0 = 0; c0 < cols; c0 += size(cols)) {
        const c1 = Math.min(cols, c0 + size(cols));
        const { inverseScale, zero } = hqqInitial(values, c0, c1, bits);
        for (let c = c0; c < c1; c++) {
          codes[c] = Math.min(maxq, Math.max(0, roundHalfEven(values[c]! * inverseScale + zero)));
        }
        groups.push({ scale: 1 / inverseScale, zero });
      }
      encodeCodes(codes, groups, out);
    },
    decodeRow(bytes, out) {
      const cols = out.length;
      checkRowBytes(name, bytes, rowBytes(cols), cols);
      const codes = unpackCodes(bytes.subarray(groupsOf(cols) * 4), bits, cols);
      for (let g = 0, c0 = 0; c0 < cols; g++, c0 += size(cols)) {
        const scale = readScale(bytes, 4 * g, "f16");
        const zero = readScale(bytes, 4 * g + 2, "f16");
        const c1 = Math.min(cols, c0 + size(cols));
        for (let c = c0; c < c1; c++) out[c] = (codes[c]! - zero) * scale;
      }
    },
    tensorScale: () => 1,
  };
}
