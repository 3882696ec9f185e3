/**
 * How a format's matrices reach the WebGPU kernels: the element and scale decoders to use (the
 * WGSL decoders of `kernels/webgpu/matmul_wgsl.ts`, chosen by {@linkcode GpuLayout.element} and
 * {@linkcode GpuLayout.scale}) and how to write one row's codes and scale entries into the
 * backend's chunk layout (`kernels/webgpu/pack.ts`). A format module (`format.ts`) returns a
 * {@linkcode GpuPlan} for each matrix it can run on the GPU.
 *
 * Codes are written as a little-endian bit stream of `bits`-bit codes, 32 codes per chunk;
 * scale entries are 1, 2 or 4 bytes as the scale kind says, one per group of `2^gshift` elements.
 *
 * @module
 */
import type { CodedMatrix } from "../../core/coded.ts";

/**
 * How an element code becomes a number: an unsigned integer, an OCP minifloat, or IEEE half,
 * bfloat16 or single bits.
 */
export type ElementKind =
  | "uint"
  | "e2m1"
  | "e2m3"
  | "e3m2"
  | "e4m3"
  | "e5m2"
  | "f16"
  | "bf16"
  | "f32";

/**
 * How a group's scale is stored and applied: `f16`, `bf16`, `f32` (a scale `s`: `s·(q − zero)`
 * with the layout's constant `zero`), `f16zero` (scale and zero point as two f16 in one word:
 * `s·(q − z)`), `f16min` (scale and offset: `s·q + m`), `e8m0` (a power-of-two byte), `e4m3`
 * (an FP8 byte), `none`.
 */
export type ScaleKind =
  | "none"
  | "f16"
  | "bf16"
  | "f32"
  | "f16zero"
  | "f16min"
  | "e8m0"
  | "e4m3";

/** The decoders a matrix needs in the kernels. */
export interface GpuLayout {
  element: ElementKind;
  /** Bits per code (32 for `f32`); also the u32 words per chunk. */
  bits: number;
  /** Constant zero point subtracted from `uint` codes when the scales carry none of their own. */
  zero: number;
  scale: ScaleKind;
  /** Elements per scale group: `2^gshift` (`gshift` 31: one group per row). */
  gshift: number;
}

/** A matrix's GPU layout and the writers of its rows in that layout. */
export interface GpuPlan {
  layout: GpuLayout;
  /** Multiplies every result (the format's per-tensor scale); 1 when none. */
  tensorScale: number;
  /** Writes row `r`'s codes as chunk words (zeroed by the caller). */
  codes(r: number, words: Uint32Array): void;
  /** Calls `put` with row `r`'s scale entry of each group `g < groups`. */
  scales(r: number, groups: number, put: (g: number, entry: number) => void): void;
}

/** Writes a `bits`-bit `code` LSB-first into `out` at bit offset `bit`. */
export function putBits(out: Uint32Array, bit: number, bits: number, code: number): void {
  const w = bit >>> 5;
  const sh = bit & 31;
  out[w] = (out[w]! | (code << sh)) >>> 0;
  if (sh + bits > 32) out[w + 1] = (out[w + 1]! | (code >>> (32 - sh))) >>> 0;
}

/** Little-endian u16 at byte `o`. */
export const u16 = (b: Uint8Array, o: number): number => b[o]! | (b[o + 1]! << 8);

/** Little-endian u32 at byte `o`. */
export const u32 = (b: Uint8Array, o: number): number =>
  (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;

/** Readers of one encoded row's bytes, for codecs whose rows are byte runs. */
export interface RowReader {
  codes(row: Uint8Array, words: Uint32Array): void;
  scales(row: Uint8Array, groups: number, put: (g: number, entry: number) => void): void;
}

/** The plan of a coded matrix whose rows `reader` reads. */
export function rowPlan(
  m: CodedMatrix,
  layout: GpuLayout,
  tensorScale: number,
  reader: RowReader,
): GpuPlan {
  const row = (r: number) => m.data.subarray(r * m.rowBytes, (r + 1) * m.rowBytes);
  return {
    layout,
    tensorScale,
    codes: (r, words) => reader.codes(row(r), words),
    scales: (r, groups, put) => reader.scales(row(r), groups, put),
  };
}

/**
 * Rows that store `scaleCount(cols)` scale entries of `scaleSize` bytes first, then element codes
 * packed LSB-first from the next byte (MX, NVFP4, scaled minifloats, f16/bf16 storage); `flip`
 * is XORed into every code byte (signed codes made unsigned around the layout's zero of 128).
 */
export function scalesThenCodes(
  m: CodedMatrix,
  element: ElementKind,
  bits: number,
  scale: ScaleKind,
  gshift: number,
  scaleCount: (cols: number) => number,
  scaleSize: number,
  tensorScale: number,
  flip = 0,
): GpuPlan {
  const nScales = scaleCount(m.cols);
  const codeStart = nScales * scaleSize;
  return rowPlan(m, { element, bits, zero: flip ? 128 : 0, scale, gshift }, tensorScale, {
    codes(row, words) {
      const bytes = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
      const codes = row.subarray(codeStart, Math.min(row.length, codeStart + bytes.length));
      bytes.set(codes);
      if (flip) { for (let i = 0; i < codes.length; i++) bytes[i]! ^= flip; }
    },
    scales(row, _groups, put) {
      for (let g = 0; g < nScales; g++) {
        const o = g * scaleSize;
        put(g, scaleSize === 4 ? u32(row, o) : scaleSize === 2 ? u16(row, o) : row[o]!);
      }
    },
  });
}

/**
 * QuIP#'s E8P codes for the WebGPU decoder (`kernels/webgpu/e8p_wgsl.ts`): per row `rowWords`
 * words of 16-bit E8P12 codes (two a word, low half first), the residual codes the same way
 * (`secondWords` a row: four 8-bit E81B codes or two 16-bit E8P12 codes a word), the input signs
 * `su` as ±1 and the output scales `sv` as f32.
 */
export interface E8pGpuPlan {
  kind: "e8p";
  /** 0: plain E8P12; 3 or 4: the residual variant of that many bits. */
  rvq: 0 | 3 | 4;
  rowWords: number;
  codes: Uint32Array;
  secondWords: number;
  second: Uint32Array;
  su: Float32Array;
  sv: Float32Array;
}

/**
 * AQLM's codes for the WebGPU decoder (`kernels/webgpu/aqlm_wgsl.ts`): each row's bit stream as
 * the format stores it (`B`-bit codes, group-major then codebook, LSB first) padded to `rowWords`
 * words; the codebooks as f16 pairs, each codeword padded to `stride` words; scales as f32.
 */
export interface AqlmGpuPlan {
  kind: "aqlm";
  codebooks: number;
  bits: number;
  groupSize: number;
  rowWords: number;
  codes: Uint32Array;
  stride: number;
  codebook: Uint32Array;
  scales: Float32Array;
}

/**
 * VPTQ's parts for the WebGPU decoder (`kernels/webgpu/vptq_wgsl.ts`): the packed index streams as
 * stored (main then residual, the residual from word `resOffset`), the centroids as f32 (main then
 * residual), the outlier columns (`rows × outlierCols` f32), and per stored column its matrix
 * column, norm scale and norm bias (identity, 1 and 0 where the matrix has none).
 */
export interface VptqGpuPlan {
  kind: "vptq";
  vectorLen: number;
  centroids: number;
  resCentroids: number;
  outlierCols: number;
  indices: Uint32Array;
  resOffset: number;
  codebook: Float32Array;
  outliers: Float32Array;
  perm: Uint32Array;
  normScale: Float32Array;
  normBias: Float32Array;
  /** Whether the matrix has a norm (else the kernels skip the bias term). */
  norm: boolean;
}

/**
 * One of QuIP's random orthogonal matrices (`quip_rotation.ts`) for the WebGPU rotation kernel
 * (`kernels/webgpu/quip_rotation_wgsl.ts`): its size `n = p0 · p1`, how many `p0 × p0` and
 * `p1 × p1` factors it has (1, or one per column and per row), the factors as f32 (the `p0`
 * ones, then the `p1` ones, row-major) and its permutations (`perm_in`, `perm_out` and their
 * inverses, `n` each).
 */
export interface QuipGpuRotation {
  n: number;
  p0: number;
  p1: number;
  count0: number;
  count1: number;
  factors: Float32Array;
  perms: Uint32Array;
}

/**
 * QuIP's parts for WebGPU (`kernels/webgpu/quip_matmul.ts`): the codes as an unsigned layout of
 * unit scale and zero point 0 in the chunk layout of {@linkcode GpuPlan} (the integer GEMV/GEMM
 * multiplies them), the grid's scale and step `2 / (2^b − 1)`, the column scales and the two
 * rotations `u` (output side, `rows`) and `v` (input side, `cols`).
 */
export interface QuipGpuPlan {
  kind: "quip";
  codes: GpuPlan;
  scale: number;
  step: number;
  colScale: Float32Array;
  u: QuipGpuRotation;
  v: QuipGpuRotation;
}

/**
 * A matrix decoded inside the matmul by its own kernels instead of the chunk layout of
 * {@linkcode GpuPlan} alone: codebook entries (`kernels/webgpu/codebook_matmul.ts`), or QuIP's
 * integer codes between two rotations.
 */
export type GpuCodebookPlan = E8pGpuPlan | AqlmGpuPlan | VptqGpuPlan | QuipGpuPlan;

/** Little-endian u32 words of `bytes` (zero-padded to whole words). */
export function wordsOf(bytes: Uint8Array): Uint32Array {
  const out = new Uint32Array(Math.ceil(bytes.length / 4));
  new Uint8Array(out.buffer).set(bytes);
  return out;
}
