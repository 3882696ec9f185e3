/**
 * ggml's single-scale block formats — Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_0, IQ4_NL and MXFP4 —
 * decoded as ggml's `dequantize_row_*` and encoded as llama.cpp's quantizers do without an
 * importance matrix (`quantize_row_*_ref`, and `quantize_iq4_nl` for IQ4_NL). Every float
 * operation is rounded to float32 in ggml's order, so the bytes match llama.cpp's files.
 *
 * Layouts (little-endian, `d`/`m` are IEEE halves): an element's low nibble holds the first half
 * of the block and its high nibble the second half (`y[j]` and `y[j + 16]`).
 *
 * @module
 */
import { blockCount, readF16, writeU16 } from "./block_io.ts";
import { e8m0ToF32Half, f32ToF16, roundHalfAway } from "./numeric.ts";

const f = Math.fround;

/** The 16 non-linear IQ4_NL levels (ggml `kvalues_iq4nl`), multiplied by the block scale. */
// deno-fmt-ignore
export const IQ4_NL_VALUES: readonly number[] = [
  -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/**
 * The 16 MXFP4 (E2M1) code points doubled, as ggml stores them (`kvalues_mxfp4`): code c means
 * `MXFP4_VALUES[c] × 2^(e-128)`, i.e. the OCP E2M1 value × 2^(e-127).
 */
// deno-fmt-ignore
export const MXFP4_VALUES: readonly number[] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/** `block_q4_0`: `d` (f16), 16 bytes of 4-bit codes; y = (q - 8)·d. */
export function decodeQ4_0(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("Q4_0", 32, 18, n, bytes);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * 18;
    const d = readF16(bytes, o);
    for (let j = 0; j < 16; j++) {
      const q = bytes[o + 2 + j]!;
      y[i * 32 + j] = ((q & 0x0f) - 8) * d;
      y[i * 32 + j + 16] = ((q >> 4) - 8) * d;
    }
  }
  return y;
}

/** `block_q4_1`: `d`, `m` (f16), 16 bytes of 4-bit codes; y = q·d + m. */
export function decodeQ4_1(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("Q4_1", 32, 20, n, bytes);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * 20;
    const d = readF16(bytes, o);
    const m = readF16(bytes, o + 2);
    for (let j = 0; j < 16; j++) {
      const q = bytes[o + 4 + j]!;
      y[i * 32 + j] = f((q & 0x0f) * d) + m;
      y[i * 32 + j + 16] = f((q >> 4) * d) + m;
    }
  }
  return y;
}

function readU32(bytes: Uint8Array, o: number): number {
  return (bytes[o]! | (bytes[o + 1]! << 8) | (bytes[o + 2]! << 16) | (bytes[o + 3]! << 24)) >>> 0;
}

/** `block_q5_0`: `d` (f16), `qh` (32 fifth bits), 16 bytes of low nibbles; y = (q - 16)·d. */
export function decodeQ5_0(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("Q5_0", 32, 22, n, bytes);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * 22;
    const d = readF16(bytes, o);
    const qh = readU32(bytes, o + 2);
    for (let j = 0; j < 16; j++) {
      const q = bytes[o + 6 + j]!;
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      y[i * 32 + j] = (((q & 0x0f) | h0) - 16) * d;
      y[i * 32 + j + 16] = (((q >> 4) | h1) - 16) * d;
    }
  }
  return y;
}

/** `block_q5_1`: `d`, `m` (f16), `qh`, 16 bytes of low nibbles; y = q·d + m. */
export function decodeQ5_1(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("Q5_1", 32, 24, n, bytes);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * 24;
    const d = readF16(bytes, o);
    const m = readF16(bytes, o + 2);
    const qh = readU32(bytes, o + 4);
    for (let j = 0; j < 16; j++) {
      const q = bytes[o + 8 + j]!;
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      y[i * 32 + j] = f(((q & 0x0f) | h0) * d) + m;
      y[i * 32 + j + 16] = f(((q >> 4) | h1) * d) + m;
    }
  }
  return y;
}

/** `block_q8_0`: `d` (f16), 32 signed bytes; y = q·d. */
export function decodeQ8_0(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("Q8_0", 32, 34, n, bytes);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * 34;
    const d = readF16(bytes, o);
    for (let j = 0; j < 32; j++) y[i * 32 + j] = ((bytes[o + 2 + j]! << 24) >> 24) * d;
  }
  return y;
}

/** `block_q2_0` (64 elements): `d` (f16), 16 bytes of 2-bit codes, low bits first; y = (q - 1)·d. */
export function decodeQ2_0(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("Q2_0", 64, 18, n, bytes);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * 18;
    const d = readF16(bytes, o);
    for (let j = 0; j < 64; j++) {
      const q = (bytes[o + 2 + (j >> 2)]! >> ((j & 3) * 2)) & 3;
      y[i * 64 + j] = (q - 1) * d;
    }
  }
  return y;
}

/** `block_iq4_nl`: `d` (f16), 16 bytes of 4-bit indices into {@link IQ4_NL_VALUES}. */
export function decodeIq4Nl(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("IQ4_NL", 32, 18, n, bytes);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * 18;
    const d = readF16(bytes, o);
    for (let j = 0; j < 16; j++) {
      const q = bytes[o + 2 + j]!;
      y[i * 32 + j] = d * IQ4_NL_VALUES[q & 0x0f]!;
      y[i * 32 + j + 16] = d * IQ4_NL_VALUES[q >> 4]!;
    }
  }
  return y;
}

/** `block_mxfp4`: E8M0 exponent byte, 16 bytes of E2M1 codes (OCP MX, 32-element blocks). */
export function decodeMxfp4(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("MXFP4", 32, 17, n, bytes);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * 17;
    const d = e8m0ToF32Half(bytes[o]!);
    for (let j = 0; j < 16; j++) {
      const q = bytes[o + 1 + j]!;
      y[i * 32 + j] = MXFP4_VALUES[q & 0x0f]! * d;
      y[i * 32 + j + 16] = MXFP4_VALUES[q >> 4]! * d;
    }
  }
  return y;
}

/** Absolute maximum and the signed value that attains it first (ggml's `amax < fabsf(v)` scan). */
function signedAbsMax(x: Float32Array, o: number, n: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < n; j++) {
    const v = x[o + j]!;
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return max;
}

/** Lowest and highest value of a block (`min`, `max` start at ±FLT_MAX as in ggml). */
function minMax(x: Float32Array, o: number, n: number): [number, number] {
  let min = 3.4028234663852886e38;
  let max = -3.4028234663852886e38;
  for (let j = 0; j < n; j++) {
    const v = x[o + j]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

/** C's float-to-int8 conversion of an in-range value: truncation toward zero. */
const trunc = Math.trunc;

/** Encodes as Q4_0 like `quantize_row_q4_0_ref`: d = max/-8 where max is the largest |x| signed. */
export function encodeQ4_0(x: Float32Array): Uint8Array {
  const nb = blockCount("Q4_0", 32, 18, x.length);
  const out = new Uint8Array(nb * 18);
  for (let i = 0; i < nb; i++) {
    const max = signedAbsMax(x, i * 32, 32);
    const d = f(max / -8);
    const id = d ? f(1 / d) : 0;
    writeU16(out, i * 18, f32ToF16(d));
    for (let j = 0; j < 16; j++) {
      const x0 = f(x[i * 32 + j]! * id);
      const x1 = f(x[i * 32 + 16 + j]! * id);
      const q0 = Math.min(15, trunc(f(x0 + 8.5)));
      const q1 = Math.min(15, trunc(f(x1 + 8.5)));
      out[i * 18 + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

/** Encodes as Q4_1 like `quantize_row_q4_1_ref`: d = (max - min)/15, m = min. */
export function encodeQ4_1(x: Float32Array): Uint8Array {
  const nb = blockCount("Q4_1", 32, 20, x.length);
  const out = new Uint8Array(nb * 20);
  for (let i = 0; i < nb; i++) {
    const [min, max] = minMax(x, i * 32, 32);
    const d = f(f(max - min) / 15);
    const id = d ? f(1 / d) : 0;
    writeU16(out, i * 20, f32ToF16(d));
    writeU16(out, i * 20 + 2, f32ToF16(min));
    for (let j = 0; j < 16; j++) {
      const x0 = f(f(x[i * 32 + j]! - min) * id);
      const x1 = f(f(x[i * 32 + 16 + j]! - min) * id);
      const q0 = Math.min(15, trunc(f(x0 + 0.5)));
      const q1 = Math.min(15, trunc(f(x1 + 0.5)));
      out[i * 20 + 4 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

function writeU32(out: Uint8Array, o: number, v: number): void {
  out[o] = v & 0xff;
  out[o + 1] = (v >>> 8) & 0xff;
  out[o + 2] = (v >>> 16) & 0xff;
  out[o + 3] = (v >>> 24) & 0xff;
}

/** Encodes as Q5_0 like `quantize_row_q5_0_ref`: d = max/-16. */
export function encodeQ5_0(x: Float32Array): Uint8Array {
  const nb = blockCount("Q5_0", 32, 22, x.length);
  const out = new Uint8Array(nb * 22);
  for (let i = 0; i < nb; i++) {
    const max = signedAbsMax(x, i * 32, 32);
    const d = f(max / -16);
    const id = d ? f(1 / d) : 0;
    writeU16(out, i * 22, f32ToF16(d));
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const x0 = f(x[i * 32 + j]! * id);
      const x1 = f(x[i * 32 + 16 + j]! * id);
      const q0 = Math.min(31, trunc(f(x0 + 16.5)));
      const q1 = Math.min(31, trunc(f(x1 + 16.5)));
      out[i * 22 + 6 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
      qh |= ((q0 & 0x10) >> 4) << j;
      qh |= ((q1 & 0x10) >> 4) << (j + 16);
    }
    writeU32(out, i * 22 + 2, qh);
  }
  return out;
}

/** Encodes as Q5_1 like `quantize_row_q5_1_ref`: d = (max - min)/31, m = min. */
export function encodeQ5_1(x: Float32Array): Uint8Array {
  const nb = blockCount("Q5_1", 32, 24, x.length);
  const out = new Uint8Array(nb * 24);
  for (let i = 0; i < nb; i++) {
    const [min, max] = minMax(x, i * 32, 32);
    const d = f(f(max - min) / 31);
    const id = d ? f(1 / d) : 0;
    writeU16(out, i * 24, f32ToF16(d));
    writeU16(out, i * 24 + 2, f32ToF16(min));
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const x0 = f(f(x[i * 32 + j]! - min) * id);
      const x1 = f(f(x[i * 32 + 16 + j]! - min) * id);
      // ggml casts to uint8_t without a clamp; the codes cannot exceed 31 here.
      const q0 = trunc(f(x0 + 0.5)) & 0xff;
      const q1 = trunc(f(x1 + 0.5)) & 0xff;
      out[i * 24 + 8 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
      qh |= ((q0 & 0x10) >> 4) << j;
      qh |= ((q1 & 0x10) >> 4) << (j + 16);
    }
    writeU32(out, i * 24 + 4, qh);
  }
  return out;
}

/** Encodes as Q8_0 like `quantize_row_q8_0_ref`: d = amax/127, q = roundf(x/d). */
export function encodeQ8_0(x: Float32Array): Uint8Array {
  const nb = blockCount("Q8_0", 32, 34, x.length);
  const out = new Uint8Array(nb * 34);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[i * 32 + j]!));
    const d = f(amax / 127);
    const id = d ? f(1 / d) : 0;
    writeU16(out, i * 34, f32ToF16(d));
    for (let j = 0; j < 32; j++) {
      out[i * 34 + 2 + j] = roundHalfAway(f(x[i * 32 + j]! * id)) & 0xff;
    }
  }
  return out;
}

/** Encodes as Q2_0 like `quantize_row_q2_0_ref`: d = amax, q = clamp(roundf(x/d) + 1, 0, 3). */
export function encodeQ2_0(x: Float32Array): Uint8Array {
  const nb = blockCount("Q2_0", 64, 18, x.length);
  const out = new Uint8Array(nb * 18);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    for (let j = 0; j < 64; j++) {
      const a = Math.abs(x[i * 64 + j]!);
      if (a > amax) amax = a;
    }
    const id = amax > 0 ? f(1 / amax) : 0;
    writeU16(out, i * 18, f32ToF16(amax));
    for (let j = 0; j < 64; j++) {
      const q = Math.max(0, Math.min(3, roundHalfAway(f(x[i * 64 + j]! * id)) + 1));
      out[i * 18 + 2 + (j >> 2)]! |= q << ((j & 3) * 2);
    }
  }
  return out;
}

/** Index of the MXFP4 level nearest to `x` at scale `e`; the first of equals wins (ggml order). */
function bestIndexMxfp4(x: number, e: number): number {
  let best = 0;
  let bestErr = Math.abs(f(f(MXFP4_VALUES[0]! * e) - x));
  for (let i = 1; i < 16; i++) {
    const err = Math.abs(f(f(MXFP4_VALUES[i]! * e) - x));
    if (err < bestErr) {
      best = i;
      bestErr = err;
    }
  }
  return best;
}

/**
 * Encodes as MXFP4 like `quantize_row_mxfp4_ref`: shared exponent floor(log2 amax) - 2 (so the
 * largest magnitude lands in E2M1's [4, 8) range), then the nearest code point per element.
 */
export function encodeMxfp4(x: Float32Array): Uint8Array {
  const nb = blockCount("MXFP4", 32, 17, x.length);
  const out = new Uint8Array(nb * 17);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) {
      if (amax < Math.abs(x[i * 32 + j]!)) amax = Math.abs(x[i * 32 + j]!);
    }
    // log2f is float-valued: round the double log2 to float32 before flooring, as C does.
    const e = amax > 0 ? trunc(Math.floor(f(Math.log2(amax))) - 2 + 127) & 0xff : 0;
    const d = e8m0ToF32Half(e);
    out[i * 17] = e;
    for (let j = 0; j < 16; j++) {
      const q0 = bestIndexMxfp4(x[i * 32 + j]!, d);
      const q1 = bestIndexMxfp4(x[i * 32 + 16 + j]!, d);
      out[i * 17 + 1 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

/**
 * ggml's `best_index_int8` for the sorted IQ4_NL levels: the level whose midpoint with its lower
 * neighbour `x` reaches (comparing 2x with the exact sum, ties to the upper level).
 */
function bestIndexIq4(x: number): number {
  const x2 = f(x + x);
  let idx = 0;
  for (let step = 8; step > 0; step >>= 1) {
    const j = idx + step;
    if (x2 >= IQ4_NL_VALUES[j - 1]! + IQ4_NL_VALUES[j]!) idx = j;
  }
  return idx;
}

/**
 * Encodes as IQ4_NL like llama.cpp's `quantize_iq4_nl` without an importance matrix (weights
 * x², `ntry` = 7 scale candidates either side of max/-127), which is what `llama-quantize` runs.
 */
export function encodeIq4Nl(x: Float32Array): Uint8Array {
  const nb = blockCount("IQ4_NL", 32, 18, x.length);
  const out = new Uint8Array(nb * 18);
  const ntry = 7;
  const v0 = IQ4_NL_VALUES[0]!;
  const L = new Uint8Array(32);
  for (let i = 0; i < nb; i++) {
    const o = i * 32;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const ax = Math.abs(x[o + j]!);
      if (ax > amax) {
        amax = ax;
        max = x[o + j]!;
      }
    }
    let d = 0;
    if (amax >= 1e-15) {
      d = f(-max / v0);
      let id = f(1 / d);
      let sumqx = 0;
      let sumq2 = 0;
      for (let j = 0; j < 32; j++) {
        const xj = x[o + j]!;
        const w = f(xj * xj);
        const q = IQ4_NL_VALUES[bestIndexIq4(f(id * xj))]!;
        sumqx = f(sumqx + f(f(w * q) * xj));
        sumq2 = f(sumq2 + f(f(w * q) * q));
      }
      d = sumq2 > 0 ? f(sumqx / sumq2) : 0;
      let best = f(d * sumqx);
      for (let itry = -ntry; itry <= ntry; itry++) {
        id = f((itry + v0) / max);
        sumqx = 0;
        sumq2 = 0;
        for (let j = 0; j < 32; j++) {
          const xj = x[o + j]!;
          const w = f(xj * xj);
          const q = IQ4_NL_VALUES[bestIndexIq4(f(id * xj))]!;
          sumqx = f(sumqx + f(f(w * q) * xj));
          sumq2 = f(sumq2 + f(f(w * q) * q));
        }
        if (sumq2 > 0 && f(sumqx * sumqx) > f(best * sumq2)) {
          d = f(sumqx / sumq2);
          best = f(d * sumqx);
        }
      }
    }
    writeU16(out, i * 18, f32ToF16(d));
    const id = d ? f(1 / d) : 0;
    for (let j = 0; j < 32; j++) L[j] = bestIndexIq4(f(id * x[o + j]!));
    for (let j = 0; j < 16; j++) out[i * 18 + 2 + j] = L[j]! | (L[j + 16]! << 4);
  }
  return out;
}
