/**
 * VPTQ's stored matrices (Liu et al., 2024; microsoft/VPTQ): a `rows × cols` weight matrix cut,
 * column by column, into vectors of `v` consecutive output rows (the reference quantizes one
 * input column at a time, `enable_transpose`), each vector stored as the index of one of `k`
 * centroids, plus optionally the index of one of `r` residual centroids added to it. Side
 * tensors (all in `sides`, float ones as IEEE half bit patterns, as the release stores them):
 *
 * - `centroids` (`count × v` halves) and `indices` (bit-packed, `log2 k` bits each, LSB first;
 *   index of stored quantized column `q`, vector `g` at position `q · G + g`, G = ⌈rows / v⌉;
 *   rows past the last are padding and never read);
 * - `res_centroids` and `res_indices` (same layout, `log2 r` bits) when `r > 0`;
 * - `outliers` (`rows × o` halves): the first `o` stored columns kept unquantized (VPTQ's
 *   `npercent` outlier columns; higher precision than the codes);
 * - `perm` (`Uint16Array`): stored column `j` is column `perm[j]` of the matrix (VPTQ's
 *   `enable_perm`, columns by decreasing Hessian diagonal);
 * - `norm_scale`, `norm_bias` (halves, per stored column): `w = q · scale + bias`
 *   (`enable_norm`).
 *
 * The codec name is the element format's: `vptq-v<v>-k<k>-<r>` (the release's `v8-k65536-256`).
 * Bits per weight count every byte stored, codebooks included.
 *
 * @module
 */
import type { CodedMatrix } from "../../core/coded.ts";
import type { SideTensor } from "../../core/matrix.ts";
import { f16ToF32, f32ToF16 } from "./gguf/numeric.ts";

/** The codebook shape a VPTQ name gives. */
export interface VptqConfig {
  /** Vector length `v`. */
  vectorLen: number;
  /** Main centroids `k` (a power of two). */
  centroids: number;
  /** Residual centroids `r` (0: none; else a power of two). */
  resCentroids: number;
}

/** Codec and element-format names: `vptq-v8-k65536-256`. */
export const VPTQ_NAME = /^vptq-v(\d+)-k(\d+)-(\d+)$/;

/** Thrown for a VPTQ name, matrix or part that does not fit. */
export class VptqFormatError extends Error {
  override name = "VptqFormatError";
}

const isPow2 = (n: number) => Number.isInteger(n) && n >= 2 && (n & (n - 1)) === 0;

/** The configuration named by `name`, or a {@linkcode VptqFormatError}. */
export function parseVptqName(name: string): VptqConfig {
  const m = VPTQ_NAME.exec(name);
  const [v, k, r] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
  if (!m || v < 1 || !isPow2(k) || k > 65536 || (r !== 0 && (!isPow2(r) || r > 65536))) {
    throw new VptqFormatError(
      `VPTQ name "${name}" is not vptq-v<v>-k<k>-<r> with v ≥ 1, k a power of two ≤ 65536 and ` +
        `r 0 or a power of two ≤ 65536`,
    );
  }
  return { vectorLen: v, centroids: k, resCentroids: r };
}

/** The name of `config`. */
export function vptqName(config: VptqConfig): string {
  return `vptq-v${config.vectorLen}-k${config.centroids}-${config.resCentroids}`;
}

/** Bits of one index into `k` centroids. */
export const indexBits = (k: number): number => Math.log2(k);

/** `values` (each < 2^bits) packed LSB first. */
export function packIndices(values: ArrayLike<number>, bits: number): Uint8Array {
  const out = new Uint8Array(Math.ceil((values.length * bits) / 8));
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    for (let b = 0; b < bits; b++) {
      if ((v >>> b) & 1) {
        const at = i * bits + b;
        out[at >>> 3]! |= 1 << (at & 7);
      }
    }
  }
  return out;
}

/** Value `i` of a stream packed by {@linkcode packIndices}. */
export function unpackIndex(packed: Uint8Array, i: number, bits: number): number {
  let at = i * bits;
  let v = 0;
  for (let b = 0; b < bits; b++, at++) v |= ((packed[at >>> 3]! >>> (at & 7)) & 1) << b;
  return v >>> 0;
}

/** Float values as IEEE half bit patterns (how every float side tensor is stored). */
export function toHalves(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToF16(Math.fround(values[i]!));
  return out;
}

/** `x` rounded to the nearest half (what a stored float side tensor decodes to). */
export const roundHalf = (x: number): number => f16ToF32(f32ToF16(Math.fround(x)));

/** What {@linkcode buildVptq} stores, before packing. */
export interface VptqParts {
  rows: number;
  cols: number;
  config: VptqConfig;
  /** `count × v` centroids (rounded to half on storing). */
  centroids: ArrayLike<number>;
  /** One index per (quantized stored column, vector), `q · G + g`. */
  indices: ArrayLike<number>;
  resCentroids?: ArrayLike<number>;
  resIndices?: ArrayLike<number>;
  /** Outlier columns: `rows × outlierCols` values of the first stored columns. */
  outlierCols?: number;
  outliers?: ArrayLike<number>;
  /** Stored column `j` is matrix column `perm[j]`. */
  perm?: ArrayLike<number>;
  /** Per stored column: `w = q · scale + bias`. */
  normScale?: ArrayLike<number>;
  normBias?: ArrayLike<number>;
}

/** The stored matrix of `parts` (every float side tensor in half precision). */
export function buildVptq(parts: VptqParts): CodedMatrix {
  const { rows, cols, config } = parts;
  const v = config.vectorLen;
  const groups = Math.ceil(rows / v);
  const o = parts.outlierCols ?? 0;
  const quantized = cols - o;
  if (parts.indices.length !== quantized * groups || parts.centroids.length % v !== 0) {
    throw new VptqFormatError(
      `VPTQ parts of a ${rows} × ${cols} matrix need ${quantized * groups} indices and whole ` +
        `centroids of ${v}, got ${parts.indices.length} and ${parts.centroids.length} values`,
    );
  }
  const sides: Record<string, SideTensor> = {
    centroids: toHalves(parts.centroids),
    indices: packIndices(parts.indices, indexBits(config.centroids)),
  };
  if (config.resCentroids > 0) {
    if (!parts.resCentroids || !parts.resIndices) {
      throw new VptqFormatError(`VPTQ "${vptqName(config)}" needs residual centroids and indices`);
    }
    sides.res_centroids = toHalves(parts.resCentroids);
    sides.res_indices = packIndices(parts.resIndices, indexBits(config.resCentroids));
  }
  if (o > 0) sides.outliers = toHalves(parts.outliers!);
  if (parts.perm) sides.perm = Uint16Array.from(parts.perm);
  if (parts.normScale) {
    sides.norm_scale = toHalves(parts.normScale);
    sides.norm_bias = toHalves(parts.normBias!);
  }
  return {
    kind: "coded",
    codec: vptqName(config),
    rows,
    cols,
    rowBytes: 0,
    data: new Uint8Array(0),
    tensorScale: 1,
    sides,
  };
}

/** Half side tensors decoded once per tensor (decoders run per row in hot loops). */
const decodedHalves = new WeakMap<SideTensor, Float32Array>();

/** The float values of half side tensor `t`. */
export function halves(t: SideTensor): Float32Array {
  let out = decodedHalves.get(t);
  if (out === undefined) {
    out = Float32Array.from(t as Uint16Array, f16ToF32);
    decodedHalves.set(t, out);
  }
  return out;
}

/** Decodes row `r` of VPTQ matrix `m` into `out` (length `m.cols`). */
export function decodeVptqRow(m: CodedMatrix, r: number, out: Float32Array): void {
  const config = parseVptqName(m.codec);
  const s = m.sides ?? {};
  const v = config.vectorLen;
  const groups = Math.ceil(m.rows / v);
  const g = Math.floor(r / v);
  const lane = r % v;
  const centroids = halves(s.centroids!);
  const indices = s.indices as Uint8Array;
  const bits = indexBits(config.centroids);
  const res = config.resCentroids > 0 ? halves(s.res_centroids!) : undefined;
  const resIndices = s.res_indices as Uint8Array | undefined;
  const resBits = indexBits(config.resCentroids);
  const outliers = s.outliers ? halves(s.outliers) : undefined;
  const o = outliers ? outliers.length / m.rows : 0;
  const perm = s.perm as Uint16Array | undefined;
  const scale = s.norm_scale ? halves(s.norm_scale) : undefined;
  const bias = s.norm_bias ? halves(s.norm_bias) : undefined;
  for (let j = 0; j < m.cols; j++) {
    let value: number;
    if (j < o) {
      value = outliers![r * o + j]!;
    } else {
      const at = (j - o) * groups + g;
      value = centroids[unpackIndex(indices, at, bits) * v + lane]!;
      if (res) value = Math.fround(value + res[unpackIndex(resIndices!, at, resBits) * v + lane]!);
    }
    // Float32 operations one at a time, as the WebAssembly decoder computes them.
    if (scale) value = Math.fround(Math.fround(value * scale[j]!) + bias![j]!);
    out[perm ? perm[j]! : j] = value;
  }
}

/** Storage bits of VPTQ matrix `m`: every side tensor's bytes. */
export function vptqBits(m: CodedMatrix): number {
  let bytes = m.data.byteLength;
  for (const t of Object.values(m.sides ?? {})) bytes += t.byteLength;
  return bytes * 8;
}

/**
 * Bits per weight of a `rows × cols` matrix in `config` without outliers, permutation or norm:
 * packed indices and half codebooks of `min(k, vectors)` entries.
 */
export function vptqBitsPerWeight(config: VptqConfig, rows: number, cols: number): number {
  const v = config.vectorLen;
  const vectors = Math.ceil(rows / v) * cols;
  const part = (k: number) =>
    Math.ceil((vectors * indexBits(k)) / 8) * 8 + Math.min(k, vectors) * v * 16;
  const total = part(config.centroids) + (config.resCentroids > 0 ? part(config.resCentroids) : 0);
  return total / (rows * cols);
}
