/**
 * AQLM's stored matrix (additive quantization, Egiazarian et al., 2024): each row is cut into
 * groups of `g` consecutive weights (`in_group_size`), and each group is the sum of `M` codewords,
 * one from each of `M` codebooks of `2^B` vectors of length `g`, times the row's scale:
 *
 * `W[r, j·g + i] = s_r · Σ_m C[m, code[r, j, m], i]`.
 *
 * A row whose length is not a multiple of `g` ends in a group padded with zeros (the reference
 * asks for whole groups; stories260K's FFN down projection has 172 columns); the padding is
 * encoded like any weight and dropped when decoding.
 *
 * A matrix is a {@linkcode CodedMatrix} of codec `aqlm-<M>x<B>-g<g>` whose `data` holds the codes,
 * row by row, group by group, codebook by codebook, each `B` bits, least significant bit first,
 * every row starting on a byte; its side tensors are `codebooks` (`M × 2^B × g` IEEE halves, as
 * the reference stores them: `codebook_value_nbits` 16) and `scales` (one half per output channel:
 * the reference's `scale_nbits` 0). Nothing is decoded ahead of a matmul: rows are decoded from
 * the codes as they are needed.
 *
 * @module
 */
import type { CodedMatrix } from "../../core/coded.ts";

/** An AQLM codebook scheme: `M` codebooks of `2^B` vectors of `g` weights. */
export interface AqlmScheme {
  /** Codebooks per group (`num_codebooks`). */
  codebooks: number;
  /** Bits of one code (`nbits_per_codebook`). */
  bits: number;
  /** Weights per group along a row (`in_group_size`). */
  groupSize: number;
}

/** Thrown for a scheme or matrix shape AQLM cannot store. */
export class AqlmShapeError extends Error {
  override name = "AqlmShapeError";
}

const CODEC = /^aqlm-(\d+)x(\d+)-g(\d+)$/;

/** The codec name of `scheme`: `aqlm-<M>x<B>-g<g>`. */
export function aqlmCodecName(scheme: AqlmScheme): string {
  return `aqlm-${scheme.codebooks}x${scheme.bits}-g${scheme.groupSize}`;
}

/** The scheme of an AQLM codec name, or undefined for another codec. */
export function parseAqlmCodec(codec: string): AqlmScheme | undefined {
  const m = CODEC.exec(codec);
  if (!m) return undefined;
  return { codebooks: Number(m[1]), bits: Number(m[2]), groupSize: Number(m[3]) };
}

/** Why `scheme` is no AQLM scheme, or undefined when it is one. */
export function aqlmMisfit(scheme: AqlmScheme): string | undefined {
  const { codebooks, bits, groupSize } = scheme;
  const whole = [codebooks, bits, groupSize].every(Number.isInteger);
  if (!(whole && codebooks >= 1 && bits >= 1 && bits <= 16 && groupSize >= 1)) {
    return `AQLM scheme "${aqlmCodecName(scheme)}" needs whole numbers, 1 ≤ bits ≤ 16, at ` +
      `least one codebook and groups of at least one weight`;
  }
  return undefined;
}

/** Groups per row of `cols` weights (the last one padded). */
export function aqlmGroups(scheme: AqlmScheme, cols: number): number {
  return Math.ceil(cols / scheme.groupSize);
}

/** Bytes of one row's codes. */
export function aqlmRowBytes(scheme: AqlmScheme, cols: number): number {
  return Math.ceil(aqlmGroups(scheme, cols) * scheme.codebooks * scheme.bits / 8);
}

/**
 * Storage bits of a `rows × cols` matrix: codes (whole bytes per row), the codebooks and one
 * scale per row, all halves.
 */
export function aqlmMatrixBits(scheme: AqlmScheme, rows: number, cols: number): number {
  const codebook = scheme.codebooks * 2 ** scheme.bits * scheme.groupSize * 16;
  return rows * aqlmRowBytes(scheme, cols) * 8 + codebook + rows * 16;
}

/** The parts of an AQLM matrix, in float: what {@linkcode buildAqlmMatrix} takes. */
export interface AqlmParts {
  scheme: AqlmScheme;
  rows: number;
  cols: number;
  /** `rows × groups × M` codes, each in `[0, 2^B)`. */
  codes: Int32Array;
  /** `M × 2^B × g` codebook values. */
  codebooks: ArrayLike<number>;
  /** One scale per row. */
  scales: ArrayLike<number>;
}

function halves(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  const h = new Float16Array(out.buffer);
  for (let i = 0; i < values.length; i++) h[i] = values[i]!;
  return out;
}

/** The stored matrix of `parts`: codes packed, codebooks and scales rounded to halves. */
export function buildAqlmMatrix(parts: AqlmParts): CodedMatrix {
  const { scheme, rows, cols, codes } = parts;
  const misfit = aqlmMisfit(scheme);
  if (misfit !== undefined) throw new AqlmShapeError(misfit);
  const perRow = aqlmGroups(scheme, cols) * scheme.codebooks;
  const size = 2 ** scheme.bits;
  if (codes.length !== rows * perRow || parts.scales.length !== rows) {
    throw new AqlmShapeError(
      `AQLM ${aqlmCodecName(scheme)} of ${rows} × ${cols} needs ${rows * perRow} codes and ` +
        `${rows} scales, got ${codes.length} and ${parts.scales.length}`,
    );
  }
  if (parts.codebooks.length !== scheme.codebooks * size * scheme.groupSize) {
    throw new AqlmShapeError(
      `AQLM ${aqlmCodecName(scheme)} needs ${scheme.codebooks * size * scheme.groupSize} ` +
        `codebook values, got ${parts.codebooks.length}`,
    );
  }
  const rowBytes = aqlmRowBytes(scheme, cols);
  const data = new Uint8Array(rows * rowBytes);
  const b = scheme.bits;
  for (let r = 0; r < rows; r++) {
    let bit = r * rowBytes * 8;
    for (let k = 0; k < perRow; k++, bit += b) {
      const code = codes[r * perRow + k]!;
      if (!(code >= 0 && code < size)) {
        throw new AqlmShapeError(`AQLM code ${code} is outside [0, ${size})`);
      }
      for (let i = 0; i < b; i++) {
        if ((code >>> i) & 1) data[(bit + i) >>> 3]! |= 1 << ((bit + i) & 7);
      }
    }
  }
  return {
    kind: "coded",
    codec: aqlmCodecName(scheme),
    rows,
    cols,
    rowBytes,
    data,
    tensorScale: 1,
    sides: { codebooks: halves(parts.codebooks), scales: halves(parts.scales) },
  };
}

/** The scheme of an AQLM matrix; throws {@linkcode AqlmShapeError} for another codec. */
export function aqlmSchemeOf(m: CodedMatrix): AqlmScheme {
  const scheme = parseAqlmCodec(m.codec);
  if (scheme === undefined) throw new AqlmShapeError(`Codec "${m.codec}" is not an AQLM codec`);
  return scheme;
}

/** Row `r`'s codes, unpacked into `out` (`groups × M`). */
export function unpackAqlmCodes(m: CodedMatrix, r: number, out: Int32Array): void {
  const b = aqlmSchemeOf(m).bits;
  const mask = 2 ** b - 1;
  // A bit buffer of at most 16 + 7 bits: whole bytes in, `b` bits out.
  let buffer = 0;
  let held = 0;
  let at = r * m.rowBytes;
  for (let k = 0; k < out.length; k++) {
    while (held < b) {
      buffer |= m.data[at++]! << held;
      held += 8;
    }
    out[k] = buffer & mask;
    buffer >>>= b;
    held -= b;
  }
}

/** Decoded side tensors, kept per matrix (rows are decoded in hot loops). */
const decodedSides = new WeakMap<CodedMatrix, { codebooks: Float32Array; scales: Float32Array }>();

/** An AQLM matrix's codebooks and scales as float32 (decoded once per matrix). */
export function aqlmSides(m: CodedMatrix): { codebooks: Float32Array; scales: Float32Array } {
  let sides = decodedSides.get(m);
  if (sides === undefined) {
    const f32 = (name: string) => {
      // Read here, not through `sideTensor` (matrix.ts imports the format registry).
      const t = m.sides?.[name];
      if (!(t instanceof Uint16Array)) {
        throw new AqlmShapeError(`AQLM side tensor "${name}" must hold halves (Uint16Array)`);
      }
      return Float32Array.from(new Float16Array(t.buffer, t.byteOffset, t.length));
    };
    sides = { codebooks: f32("codebooks"), scales: f32("scales") };
    decodedSides.set(m, sides);
  }
  return sides;
}

/** A matrix's row decoder, made once per matrix (rows are decoded in hot loops). */
const rowDecoders = new WeakMap<CodedMatrix, (r: number, out: Float32Array) => void>();

function rowDecoder(m: CodedMatrix): (r: number, out: Float32Array) => void {
  const { codebooks: M, bits, groupSize: g } = aqlmSchemeOf(m);
  const { codebooks, scales } = aqlmSides(m);
  const groups = Math.ceil(m.cols / g);
  const codes = new Int32Array(groups * M);
  const size = 2 ** bits;
  const acc = new Float32Array(groups * g);
  // Whole-byte codes are read directly; others bit by bit.
  const unpack = bits === 8
    ? (r: number) => codes.set(m.data.subarray(r * m.rowBytes, r * m.rowBytes + codes.length))
    : bits === 16
    ? (r: number) => {
      const at = r * m.rowBytes;
      for (let k = 0; k < codes.length; k++) {
        codes[k] = m.data[at + 2 * k]! | (m.data[at + 2 * k + 1]! << 8);
      }
    }
    : (r: number) => unpackAqlmCodes(m, r, codes);
  return (r, out) => {
    unpack(r);
    acc.fill(0);
    for (let j = 0; j < groups; j++) {
      for (let k = 0; k < M; k++) {
        const at = (k * size + codes[j * M + k]!) * g;
        for (let i = 0; i < g; i++) acc[j * g + i]! += codebooks[at + i]!;
      }
    }
    const s = scales[r]!;
    for (let c = 0; c < m.cols; c++) out[c] = acc[c]! * s;
  };
}

/** Decodes row `r` of an AQLM matrix into `out` (length `cols`). */
export function decodeAqlmRow(m: CodedMatrix, r: number, out: Float32Array): void {
  let decode = rowDecoders.get(m);
  if (decode === undefined) {
    decode = rowDecoder(m);
    rowDecoders.set(m, decode);
  }
  decode(r, out);
}
