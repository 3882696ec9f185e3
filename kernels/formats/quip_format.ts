/**
 * The `quip` format module: the stored weights of QuIP (Chee et al., 2023; codecs `quip-int2`,
 * `quip-int3`, `quip-int4`). A `rows × cols` matrix `W` is stored as the integer codes `Q`
 * (`0 … 2^b − 1`) of its incoherence-processed form, so that
 *
 * `W = Uᵀ · scale · (2Q / (2^b − 1) − 1) · V · diag(1 / col_scale)`,
 *
 * with `U` (`rows × rows`) and `V` (`cols × cols`) the random orthogonal matrices of
 * `quip_rotation.ts` (the authors' `projU`, `projV`), the grid of their `qfn b` (one scale per
 * matrix, `2.4 · rms` of the processed weights) and their diagonal rescaling `scaleWH`:
 *
 * - `data`: per row, the `cols` codes of `b` bits packed little-endian (bit `k` of the row's
 *   stream is bit `k % 8` of byte `k >> 3`), rows padded to whole bytes;
 * - side tensor `scale` (`Float32Array`, 1 value): the grid scale;
 * - side tensor `col_scale` (`Float32Array`, `cols` values): `scaleWH` (1 where the method ran
 *   without its rescaling);
 * - side tensor `seeds` (`Uint32Array`, 2 values): the seeds of `U` and of `V`;
 * - side tensor `proj` (`Uint8Array`, 1 value): the rotation variant (`pre_proj_extra`).
 *
 * Bits per weight count all of them. The rotations are regenerated from their seeds once per
 * matrix; the CPU matmul (`kernels/cpu/quip_matmul.ts`) computes `W·x` as
 * `Uᵀ(scale · (2/(2^b−1) · Q·u − Σu))` with `u = V(x / col_scale)`, decoding the codes inside the
 * product. `decodeRow` needs the whole
 * matrix (`Uᵀ` mixes rows): it decodes it once and keeps it while the matrix lives. On WebGPU the
 * codes, column scales and the rotations' factors and permutations are uploaded
 * ({@linkcode quipGpuPlan}) and `kernels/webgpu/quip_matmul.ts` runs the same steps.
 *
 * @module
 */
import type { CodedMatrix } from "../../core/coded.ts";
import type { QuantizedMatrix } from "../../core/model.ts";
import { asCoded, type QuantizedWeight, type WeightFormat } from "./format.ts";
import { putBits, type QuipGpuPlan, type QuipGpuRotation } from "./gpu_layout.ts";
import {
  applyQuipRotation,
  type QuipProjMode,
  type QuipRotation,
  quipRotation,
} from "./quip_rotation.ts";

/** The codec names by bits per code. */
export const QUIP_CODECS: Readonly<Record<2 | 3 | 4, string>> = {
  2: "quip-int2",
  3: "quip-int3",
  4: "quip-int4",
};

const bitsOfCodec = (codec: string): number | undefined =>
  ({ "quip-int2": 2, "quip-int3": 3, "quip-int4": 4 } as Record<string, number>)[codec];

/** Thrown for a matrix whose stored parts do not fit its shape. */
export class QuipLayoutError extends Error {
  override name = "QuipLayoutError";
}

/** What a QuIP matrix is made of, unpacked. */
export interface QuipParts {
  c: CodedMatrix;
  bits: number;
  /** One code per weight, row-major. */
  codes: Uint8Array;
  /**
   * The codes as an integer matrix of unit scales and zero points (its rows decode to the codes
   * themselves), for the CPU matmul's integer decoder.
   */
  codeMatrix: QuantizedMatrix;
  scale: number;
  colScale: Float32Array;
  u: QuipRotation;
  v: QuipRotation;
}

const partsCache = new WeakMap<CodedMatrix, QuipParts>();

/** The matrix's parts, checked against its shape (unpacked once per matrix). */
export function quipParts(m: QuantizedWeight): QuipParts {
  const c = asCoded("quip", m);
  const cached = partsCache.get(c);
  if (cached !== undefined) return cached;
  const bits = bitsOfCodec(c.codec);
  const { scale, col_scale: colScale, seeds, proj } = c.sides ?? {};
  if (
    bits === undefined || c.rowBytes !== Math.ceil((c.cols * bits) / 8) ||
    c.data.length !== c.rows * c.rowBytes || !(scale instanceof Float32Array) ||
    scale.length !== 1 || !(colScale instanceof Float32Array) || colScale.length !== c.cols ||
    !(seeds instanceof Uint32Array) || seeds.length !== 2 || !(proj instanceof Uint8Array) ||
    proj.length !== 1 || proj[0]! > 2
  ) {
    throw new QuipLayoutError(
      `A "${c.codec}" matrix of ${c.rows} × ${c.cols} needs ${bits ?? "2, 3 or 4"}-bit codes ` +
        `packed per row, one f32 scale, ${c.cols} f32 column scales, two u32 seeds and a ` +
        `rotation variant 0, 1 or 2`,
    );
  }
  const codes = new Uint8Array(c.rows * c.cols);
  const mask = (1 << bits) - 1;
  for (let r = 0; r < c.rows; r++) {
    const at = r * c.rowBytes;
    for (let col = 0; col < c.cols; col++) {
      const k = col * bits;
      const word = c.data[at + (k >> 3)]! | ((c.data[at + (k >> 3) + 1] ?? 0) << 8);
      codes[r * c.cols + col] = (word >> (k & 7)) & mask;
    }
  }
  const mode = proj[0] as QuipProjMode;
  const out: QuipParts = {
    c,
    bits,
    codes,
    codeMatrix: {
      kind: "int",
      rows: c.rows,
      cols: c.cols,
      bits,
      groupSize: c.cols,
      symmetric: false,
      codes,
      scales: new Float32Array(c.rows).fill(1),
      zeros: new Uint8Array(c.rows),
      scaleDtype: "f32",
    },
    scale: scale[0]!,
    colScale,
    u: quipRotation(seeds[0]!, c.rows, mode),
    v: quipRotation(seeds[1]!, c.cols, mode),
  };
  partsCache.set(c, out);
  return out;
}

/** What {@linkcode quipMatrix} stores besides the codes. */
export interface QuipSides {
  scale: number;
  colScale: Float32Array;
  seedU: number;
  seedV: number;
  mode: QuipProjMode;
}

/** Builds a QuIP matrix from its codes (`rows × cols`, each `0 … 2^bits − 1`) and sides. */
export function quipMatrix(
  rows: number,
  cols: number,
  bits: 2 | 3 | 4,
  codes: Uint8Array,
  sides: QuipSides,
): CodedMatrix {
  const rowBytes = Math.ceil((cols * bits) / 8);
  const data = new Uint8Array(rows * rowBytes);
  for (let r = 0; r < rows; r++) {
    for (let col = 0; col < cols; col++) {
      const k = col * bits;
      const value = codes[r * cols + col]! << (k & 7);
      data[r * rowBytes + (k >> 3)]! |= value & 0xff;
      if (value > 0xff) data[r * rowBytes + (k >> 3) + 1]! |= value >> 8;
    }
  }
  const m: CodedMatrix = {
    kind: "coded",
    codec: QUIP_CODECS[bits],
    rows,
    cols,
    rowBytes,
    data,
    tensorScale: 1,
    sides: {
      scale: Float32Array.of(sides.scale),
      col_scale: sides.colScale,
      seeds: Uint32Array.of(sides.seedU, sides.seedV),
      proj: Uint8Array.of(sides.mode),
    },
  };
  quipParts(m);
  return m;
}

const decodedCache = new WeakMap<CodedMatrix, Float32Array>();

/** The whole matrix `W` (row-major float32), decoded once per matrix. */
export function quipDecodeMatrix(m: QuantizedWeight): Float32Array {
  const { c, bits, codes, scale, colScale, u, v } = quipParts(m);
  const cached = decodedCache.get(c);
  if (cached !== undefined) return cached;
  const { rows, cols } = c;
  const maxq = (1 << bits) - 1;
  // Rows of G·V (row g ↦ Vᵀg), stored transposed so that Uᵀ runs along contiguous rows.
  const t = new Float64Array(cols * rows);
  const row = new Float64Array(cols);
  const tmp = new Float64Array(Math.max(rows, cols));
  for (let r = 0; r < rows; r++) {
    for (let col = 0; col < cols; col++) {
      row[col] = scale * ((2 * codes[r * cols + col]!) / maxq - 1);
    }
    applyQuipRotation(v, row, 0, true, tmp);
    for (let col = 0; col < cols; col++) t[col * rows + r] = row[col]!;
  }
  for (let col = 0; col < cols; col++) applyQuipRotation(u, t, col * rows, true, tmp);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let col = 0; col < cols; col++) out[r * cols + col] = t[col * rows + r]! / colScale[col]!;
  }
  decodedCache.set(c, out);
  return out;
}

/** A rotation's factors (as f32) and its permutations with their inverses, for the GPU. */
function gpuRotation(rot: QuipRotation): QuipGpuRotation {
  const { n, p0, p1, count0, count1, permIn, permOut } = rot;
  const factors = new Float32Array(rot.b0.length + rot.b1.length);
  factors.set(rot.b0);
  factors.set(rot.b1, rot.b0.length);
  const perms = new Uint32Array(4 * n);
  perms.set(permIn);
  perms.set(permOut, n);
  for (let i = 0; i < n; i++) {
    perms[2 * n + permIn[i]!] = i;
    perms[3 * n + permOut[i]!] = i;
  }
  return { n, p0, p1, count0, count1, factors, perms };
}

/**
 * The matrix's WebGPU parts: its codes as unsigned `b`-bit elements of unit scale (one group per
 * row, no scale entries), so the integer GEMV/GEMM computes `Q·u`, and the sides of the rotations.
 */
export function quipGpuPlan(m: QuantizedWeight): QuipGpuPlan {
  const { c, bits, codes, scale, colScale, u, v } = quipParts(m);
  return {
    kind: "quip",
    codes: {
      layout: { element: "uint", bits, zero: 0, scale: "none", gshift: 31 },
      tensorScale: 1,
      codes(r, words) {
        for (let col = 0; col < c.cols; col++) {
          putBits(words, col * bits, bits, codes[r * c.cols + col]!);
        }
      },
      scales() {},
    },
    scale,
    step: 2 / ((1 << bits) - 1),
    colScale,
    u: gpuRotation(u),
    v: gpuRotation(v),
  };
}

/** QuIP's integer codes after random orthogonal incoherence processing. */
export const QUIP_FORMAT: WeightFormat = {
  name: "quip",
  description: "QuIP: 2-/3-/4-bit codes on one scaled grid after seeded random orthogonal " +
    "(Kronecker/butterfly) transforms on both sides and a diagonal rescaling",
  // Made by the quip method; rows cannot be encoded or decoded on their own.
  codecs: [],
  elements: [],
  bounds: [],
  owns: (codec) => bitsOfCodec(codec) !== undefined,
  decodeRow(m, r, out) {
    out.set(quipDecodeMatrix(m).subarray(r * m.cols, (r + 1) * m.cols));
  },
  bits(m) {
    const c = asCoded("quip", m);
    return 8 * c.rows * c.rowBytes + 32 + 32 * c.cols + 64 + 8;
  },
  gpu: quipGpuPlan,
  grid: "none",
};
