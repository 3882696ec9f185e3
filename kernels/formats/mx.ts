/**
 * OCP Microscaling (MX) v1.0 block formats: blocks of 32 elements sharing one E8M0 scale.
 *
 * Encoding follows the spec's section 6.3 ("minimally supported" conversion, the FLOOR mode of
 * torchao's `to_mx`): for a block with largest magnitude `amax`, the shared exponent is
 * `X = floor(log2(amax)) - emax` (emax of the element format: E4M3 8, E5M2 15, E2M3 2, E3M2 4,
 * E2M1 2, INT8 0), stored as the E8M0 byte `X + 127`; each element is `v / 2^X` rounded to
 * nearest, ties to even, and clamped to ±(element max). Choices the spec leaves open:
 *
 * - all-zero block: `X = -127` (byte 0, the smallest E8M0 scale; what torchao produces);
 * - a block holding NaN or ±inf: scale byte 0xFF (E8M0 NaN) and all element codes 0; per the
 *   spec every element of a NaN-scaled block decodes to NaN (torchao also maps inf to 0xFF);
 * - X is clamped below at -127; it cannot exceed 127 for float32 input since emax >= 0;
 * - MXINT8 elements (two's complement, implicit scale 2^-6, so k/64) are rounded ties-to-even
 *   and clamped symmetrically to ±127/64, as Microsoft's microxcaling reference clamps to
 *   ±max_norm; code 0x80 (-2) is never produced but decodes to -2;
 * - element codes are packed as one little-endian bit stream: element i occupies bits
 *   `[i*bits, (i+1)*bits)`, least significant bit first. For FP4 that is the low nibble first,
 *   as PyTorch's `float4_e2m1fn_x2`, torchao and vLLM pack; FP6 packs 4 elements in 3 bytes;
 * - blocks run over the flat array; a last partial block is allowed (its amax is over the
 *   elements present). To block a matrix by rows, its row length must be a multiple of 32.
 *
 * Decoding multiplies each element by `2^X` and rounds to float32.
 *
 * @module
 */
import {
  floorLog2,
  FP4_E2M1,
  FP6_E2M3,
  FP6_E3M2,
  FP8_E4M3,
  FP8_E5M2,
  type Minifloat,
} from "./minifloat.ts";

/** Elements per MX block. */
export const MX_BLOCK_SIZE = 32;
/** Bias of the E8M0 scale exponent. */
export const E8M0_BIAS = 127;
/** The E8M0 NaN code. */
export const E8M0_NAN = 0xff;

/** Thrown when scale or data arrays do not match the element count they claim. */
export class MalformedBlocksError extends Error {
  override name = "MalformedBlocksError";
}

/** An MX element type: a saturating encoder for scaled values and its decoder. */
export interface MxElement {
  name: string;
  bits: number;
  /** Exponent of the largest power of two the element can hold. */
  emax: number;
  /** Code of `v` (already divided by the block scale), saturated to the element's range. */
  encode(v: number): number;
  decode(code: number): number;
}

/** An MX block format. */
export interface MxFormat {
  name: string;
  element: MxElement;
  blockSize: number;
  /** Element bits plus the 8-bit scale shared by 32 elements. */
  bitsPerWeight: number;
}

/** MX blocks as stored: one E8M0 byte per block and the packed element codes. */
export interface MxBlocks {
  /** Number of elements encoded. */
  length: number;
  /** E8M0 scale bytes, one per block of 32 (the last block may be partial). */
  scales: Uint8Array;
  /** Element codes packed LSB-first, `ceil(length * bits / 8)` bytes. */
  data: Uint8Array;
}

const SATURATE = { saturate: true } as const;

function floatElement(codec: Minifloat): MxElement {
  return {
    name: codec.name,
    bits: codec.bits,
    emax: floorLog2(codec.max),
    encode: (v) => codec.encode(v, SATURATE),
    decode: (code) => codec.decode(code),
  };
}

/** MXINT8 element: 8-bit two's complement with an implicit scale of 2^-6. */
const INT8_ELEMENT: MxElement = {
  name: "int8",
  bits: 8,
  emax: 0,
  encode(v) {
    const x = v * 64;
    let q = Math.floor(x);
    const frac = x - q;
    if (frac > 0.5 || (frac === 0.5 && (q & 1) === 1)) q++;
    return Math.min(127, Math.max(-127, q)) & 0xff;
  },
  decode: (code) => (code >= 128 ? code - 256 : code) / 64,
};

function mxFormat(name: string, element: MxElement): MxFormat {
  return {
    name,
    element,
    blockSize: MX_BLOCK_SIZE,
    bitsPerWeight: element.bits + 8 / MX_BLOCK_SIZE,
  };
}

/** MXFP8 with E4M3 elements (8.25 bits per weight). */
export const MXFP8_E4M3: MxFormat = mxFormat("mxfp8_e4m3", floatElement(FP8_E4M3));
/** MXFP8 with E5M2 elements (8.25 bits per weight). */
export const MXFP8_E5M2: MxFormat = mxFormat("mxfp8_e5m2", floatElement(FP8_E5M2));
/** MXFP6 with E2M3 elements (6.25 bits per weight). */
export const MXFP6_E2M3: MxFormat = mxFormat("mxfp6_e2m3", floatElement(FP6_E2M3));
/** MXFP6 with E3M2 elements (6.25 bits per weight). */
export const MXFP6_E3M2: MxFormat = mxFormat("mxfp6_e3m2", floatElement(FP6_E3M2));
/** MXFP4 with E2M1 elements (4.25 bits per weight). */
export const MXFP4: MxFormat = mxFormat("mxfp4", floatElement(FP4_E2M1));
/** MXINT8: 8-bit two's complement elements k/64 (8.25 bits per weight). */
export const MXINT8: MxFormat = mxFormat("mxint8", INT8_ELEMENT);

/** Every MX format defined here. */
export const MX_FORMATS: readonly MxFormat[] = [
  MXFP8_E4M3,
  MXFP8_E5M2,
  MXFP6_E2M3,
  MXFP6_E3M2,
  MXFP4,
  MXINT8,
];

/** Value of an E8M0 scale byte: `2^(byte - 127)`, or NaN for 0xFF. */
export function e8m0Decode(byte: number): number {
  return byte === E8M0_NAN ? NaN : Math.pow(2, byte - E8M0_BIAS);
}

/**
 * Packs codes of `bits` bits each into one little-endian bit stream (element i at bits
 * `[i*bits, (i+1)*bits)`, least significant bit first; FP4 low nibble first).
 */
export function packCodes(codes: Uint8Array, bits: number): Uint8Array {
  if (bits === 8) return codes.slice();
  const out = new Uint8Array(Math.ceil((codes.length * bits) / 8));
  const mask = (1 << bits) - 1;
  for (let i = 0; i < codes.length; i++) {
    const pos = i * bits;
    const word = (codes[i]! & mask) << (pos & 7);
    const byte = pos >> 3;
    out[byte]! |= word & 0xff;
    if (word > 0xff) out[byte + 1]! |= word >> 8;
  }
  return out;
}

/** Inverse of {@linkcode packCodes}: `count` codes of `bits` bits each. */
export function unpackCodes(data: Uint8Array, bits: number, count: number): Uint8Array {
  const need = Math.ceil((count * bits) / 8);
  if (data.length !== need) {
    throw new MalformedBlocksError(
      `Packed data has ${data.length} bytes; ${count} codes of ${bits} bits need ${need}`,
    );
  }
  if (bits === 8) return data.slice();
  const out = new Uint8Array(count);
  const mask = (1 << bits) - 1;
  for (let i = 0; i < count; i++) {
    const pos = i * bits;
    const byte = pos >> 3;
    const word = data[byte]! | ((data[byte + 1] ?? 0) << 8);
    out[i] = (word >> (pos & 7)) & mask;
  }
  return out;
}

/** Encodes values into MX blocks of the given format. */
export function mxEncode(format: MxFormat, values: ArrayLike<number>): MxBlocks {
  const { element, blockSize } = format;
  const n = values.length;
  const scales = new Uint8Array(Math.ceil(n / blockSize));
  const codes = new Uint8Array(n);
  for (let b = 0; b < scales.length; b++) {
    const start = b * blockSize;
    const end = Math.min(start + blockSize, n);
    let amax = 0;
    let finite = true;
    for (let i = start; i < end; i++) {
      const a = Math.abs(values[i]!);
      if (!Number.isFinite(a)) finite = false;
      else if (a > amax) amax = a;
    }
    if (!finite) {
      scales[b] = E8M0_NAN;
      continue;
    }
    const x = amax === 0 ? -E8M0_BIAS : Math.max(floorLog2(amax) - element.emax, -E8M0_BIAS);
    scales[b] = x + E8M0_BIAS;
    const inverse = Math.pow(2, -x);
    for (let i = start; i < end; i++) codes[i] = element.encode(values[i]! * inverse);
  }
  return { length: n, scales, data: packCodes(codes, element.bits) };
}

/** Decodes MX blocks to float32 values. */
export function mxDecode(format: MxFormat, blocks: MxBlocks): Float32Array {
  const { element, blockSize } = format;
  const n = blocks.length;
  if (blocks.scales.length !== Math.ceil(n / blockSize)) {
    throw new MalformedBlocksError(
      `${format.name}: ${blocks.scales.length} scales for ${n} elements; expected ${
        Math.ceil(n / blockSize)
      }`,
    );
  }
  const codes = unpackCodes(blocks.data, element.bits, n);
  const out = new Float32Array(n);
  for (let b = 0; b < blocks.scales.length; b++) {
    const scale = e8m0Decode(blocks.scales[b]!);
    const end = Math.min((b + 1) * blockSize, n);
    for (let i = b * blockSize; i < end; i++) out[i] = element.decode(codes[i]!) * scale;
  }
  return out;
}
