/**
 * Weight layouts of the WebGPU backend. Every matrix is repacked at load time into rows of
 * 32-element *chunks*; a chunk holds its codes as a little-endian bit stream of `bits`-bit codes
 * (`bits` u32 words per chunk; `f32` weights are 32 words of float bits). Per row, chunks are
 * interleaved so that the `tpr` threads that share a row in the GEMV kernel read consecutive
 * vectors: chunk `c` lives in step `s = c / tpr` at lane `c % tpr`, and vector `v` of a chunk is
 * stored at `(row·chunks + s·tpr)·V + v·width + lane`, where `width` is the number of chunks in
 * that step and `V` the vectors per chunk. Scales live in a second buffer, one entry per group of
 * `2^gshift` elements (rows padded to whole groups), so that the kernels dequantize inside the
 * matmul. Matrices larger than the device's largest storage binding are split into row parts.
 *
 * {@linkcode decodePackedRow} decodes this layout on the CPU; tests use it to check packing
 * against the format's own decoder.
 *
 * @module
 */
import type { Matrix } from "../../core/model.ts";
import { decodeRow, storageName } from "../formats/matrix.ts";
import type { ElementKind, GpuCodebookPlan, GpuLayout, ScaleKind } from "../formats/gpu_layout.ts";
import { FP4_E2M1, FP6_E2M3, FP6_E3M2, FP8_E4M3, FP8_E5M2 } from "../formats/minifloat.ts";
import { e8m0Decode } from "../formats/mx.ts";
import { bf16ToF32 } from "../formats/gguf/numeric.ts";

export type { ElementKind, ScaleKind };

/** Bytes of one scale entry. */
export const SCALE_BYTES: Readonly<Record<ScaleKind, number>> = {
  none: 0,
  f16: 2,
  bf16: 2,
  f32: 4,
  f16zero: 4,
  f16min: 4,
  e8m0: 1,
  e4m3: 1,
};

/** Whether a layout's constant zero point applies (its scales carry none of their own). */
export function constantZero(layout: Layout): boolean {
  return layout.element === "uint" && layout.zero !== 0 && layout.scale !== "f16zero" &&
    layout.scale !== "f16min";
}

/**
 * What the kernels need to know about a layout (the format's {@linkcode GpuLayout}, whose constant
 * `zero` applies as {@linkcode constantZero} says, and the interleave); equal layouts share
 * compiled pipelines.
 */
export interface Layout extends GpuLayout {
  /** Threads sharing a row in the GEMV kernel (the chunk interleave): 32, 64, 128 or 256. */
  tpr: number;
  /** Rows per GEMV thread, when not the default of {@linkcode gemvRowsPerThread} (perf sweeps). */
  gemvRows?: number;
  /**
   * Rows per thread of the float GEMV where the default would leave too few workgroups for the
   * matrix's rows ({@linkcode occupancyRows}; set when packing).
   */
  gemvFloatRows?: number;
  /** Chunks per iteration of the integer-activation GEMV, when not its default (perf sweeps). */
  gemvUnroll?: number;
  /** Threads per row of the integer-activation GEMV, when not its default (perf sweeps). */
  gemvLanes?: number;
  /** Threads per workgroup of the integer-activation GEMV, when not 256 (perf sweeps). */
  gemvGroup?: number;
  /** Subtract symmetric zero points through activation code sums, not signed codes (sweeps). */
  gemvXsum?: boolean;
  /**
   * Float GEMV: each thread loads its own chunk of activations from the storage buffer instead
   * of the workgroup staging them in workgroup memory between two barriers per step (sweeps).
   */
  gemvDirect?: boolean;
  /**
   * Float GEMV of 2-, 4- and 8-bit integer codes with staged activations: the staging threads
   * also scale them for the codes' bit positions and sum each vec4 (for zero points), once per
   * workgroup instead of once per thread (sweeps; `gemvDirect` takes precedence).
   */
  gemvPrescale?: boolean;
  /**
   * Codebook formats (`codebook_matmul.ts`): codebooks in workgroup memory (true, where they fit)
   * or read through the cache (false); unset, those of at most 8 KiB sit in workgroup memory.
   */
  codebookShared?: boolean;
  /**
   * Codebook formats: groups (AQLM), codewords (QuIP#) or columns (VPTQ) a thread takes per step,
   * when not the kernel's default (sweeps).
   */
  codebookUnroll?: number;
  /**
   * Codebook formats: lanes sharing a row of the E8P and AQLM kernels (a power of two up to 256;
   * VPTQ ignores it), when not their default of 8 (sweeps).
   */
  codebookLanes?: number;
}

/**
 * The GEMV kernels' knobs (defaults measured on an H200; PERF.md): `gemvRows` serves both
 * kernels, `gemvDirect` and `gemvPrescale` the float GEMV, the others the integer-activation GEMV.
 */
export type GemvTuning = Pick<
  Layout,
  | "gemvLanes"
  | "gemvRows"
  | "gemvUnroll"
  | "gemvGroup"
  | "gemvXsum"
  | "gemvDirect"
  | "gemvPrescale"
  | "codebookShared"
  | "codebookUnroll"
  | "codebookLanes"
>;

/** One row range of a packed matrix, small enough for one storage binding per buffer. */
export interface PackedPart {
  rowStart: number;
  rows: number;
  /** Chunk words in the interleaved order. */
  codes: Uint32Array;
  /** Scale words (empty for `none`). */
  scales: Uint32Array;
}

/** A matrix in the backend's layout. */
export interface PackedMatrix {
  rows: number;
  cols: number;
  /** 32-element chunks per row (the last one zero-padded). */
  chunks: number;
  /** Scale groups per padded row. */
  groups: number;
  layout: Layout;
  /** Multiplies every result (per-tensor scale of the format); 1 when none. */
  tensorScale: number;
  parts: PackedPart[];
  /** Why the matrix was decoded to f32 instead of kept in its format, when it was. */
  fallback?: string;
  /** The storage it was decoded from when it fell back (`q4_k`, `hqq-int4-g64`, `int4` …). */
  fallbackFormat?: string;
  /**
   * A codebook format's parts, uploaded as they are and decoded by its own kernels
   * (`codebook_matmul.ts`); `parts` is then empty and `layout` unused. QuIP's (`quip_matmul.ts`)
   * are its rotations' sides; its codes are `parts`, in `layout`.
   */
  codebook?: GpuCodebookPlan;
}

/** Elements per chunk. */
export const CHUNK = 32;

/** Threads per workgroup of the matmul kernels. */
export const WORKGROUP = 256;

/** u32 words per vector in the interleave: as wide as a chunk allows, up to vec4. */
export function vectorWords(bits: number): 1 | 2 | 4 {
  return bits % 4 === 0 ? 4 : bits % 2 === 0 ? 2 : 1;
}

/** Most threads per row by default: 64 read int4 rows 1.5× faster than 128 on an H200 (PERF.md). */
export const MAX_THREADS_PER_ROW = 64;

/** Threads per row for a row of `chunks` chunks: enough to cover it, 32 to 64. */
export function threadsPerRow(chunks: number): number {
  let t = 32;
  while (t < MAX_THREADS_PER_ROW && t < chunks) t *= 2;
  return t;
}

/** Rows per thread in the GEMV kernel: about 32 weight words in flight per thread. */
export function gemvRowsPerThread(layout: Layout): number {
  return layout.gemvRows ?? layout.gemvFloatRows ??
    Math.max(1, Math.min(8, Math.floor(32 / layout.bits)));
}

/**
 * Workgroups a decode GEMV should at least have: about two per multiprocessor of a large GPU
 * (an H100 has 132). A 2048-row int4 matrix at 8 rows a thread made 64, so half the H100 sat idle
 * while int4 decoding ran no faster than f16 (whose 2 rows a thread made 256).
 */
export const GEMV_TARGET_GROUPS = 256;

/**
 * The float GEMV's rows per thread for a matrix of `rows`: the default, halved while the GEMV
 * would have fewer than {@linkcode GEMV_TARGET_GROUPS} workgroups. Each row's sum is computed the
 * same way whatever the thread count, so results do not change. Undefined where a sweep fixed it.
 */
export function occupancyRows(layout: Layout, rows: number): number | undefined {
  if (layout.gemvRows !== undefined) return undefined;
  const perRow = WORKGROUP / layout.tpr;
  let r = gemvRowsPerThread({ ...layout, gemvFloatRows: undefined });
  while (r > 1 && Math.ceil(rows / (r * perRow)) < GEMV_TARGET_GROUPS) r = Math.floor(r / 2);
  return r;
}

/** Rows per workgroup of the GEMV kernel. */
export function gemvRowsPerGroup(layout: Layout): number {
  return gemvRowsPerThread(layout) * (WORKGROUP / layout.tpr);
}

/**
 * Threads sharing a row in the integer-activation GEMV (the interleave of the packed codes,
 * `layout.tpr`, only fixes where each chunk lies). Measured on an H200 (PERF.md): 32 threads ×
 * 1 row × 2 chunks per iteration, 256 threads per workgroup, was among the fastest of 54 variants
 * at 8192² and 16384² (within 4 % of the best at each), and again of the 9 variants of the
 * current kernel in `deno task perf --sweep` (within 0.3 % of the best at 8192²).
 */
export function gemvA8Lanes(layout: Layout): number {
  return layout.gemvLanes ?? 32;
}

/** Rows per thread of the integer-activation GEMV. */
export function gemvA8Rows(layout: Layout): number {
  return layout.gemvRows ?? 1;
}

/** Chunks each thread loads before it computes (more loads in flight per thread). */
export function gemvA8Unroll(layout: Layout): number {
  return layout.gemvUnroll ?? 2;
}

/** Threads per workgroup of the integer-activation GEMV. */
export function gemvA8Group(layout: Layout): number {
  return layout.gemvGroup ?? WORKGROUP;
}

/** Rows per workgroup of the integer-activation GEMV. */
export function gemvA8RowsPerGroup(layout: Layout): number {
  return gemvA8Rows(layout) * (gemvA8Group(layout) / gemvA8Lanes(layout));
}

/** Index (in vectors) of vector `v` of chunk `c` of `row` in a part's code buffer. */
export function vectorIndex(
  row: number,
  c: number,
  v: number,
  chunks: number,
  tpr: number,
  vectors: number,
): number {
  const step = Math.floor(c / tpr);
  const width = Math.min(tpr, chunks - step * tpr);
  return (row * chunks + step * tpr) * vectors + v * width + (c % tpr);
}

/** Thrown when a matrix cannot be packed at all (not even as f32 rows). */
export class PackError extends Error {
  override name = "PackError";
}

/** Bytes of one row in each buffer of a layout. */
function rowBytes(layout: Layout, chunks: number, groups: number): [number, number] {
  return [chunks * layout.bits * 4, groups * SCALE_BYTES[layout.scale]];
}

/** Sizes of a packed matrix: chunks and groups per row, and its row parts. */
export interface PackedShape {
  chunks: number;
  groups: number;
  parts: { rowStart: number; rows: number; codeBytes: number; scaleBytes: number }[];
}

/**
 * Chunks, groups and row parts of a `rows × cols` matrix in `layout`, each part's buffers within
 * `maxBinding` bytes and its GEMV grid within 65535 workgroups.
 */
export function packedShape(
  rows: number,
  cols: number,
  layout: Layout,
  maxBinding: number,
): PackedShape {
  const chunks = Math.ceil(cols / CHUNK);
  const groups = layout.gshift >= 31 ? 1 : Math.ceil((chunks * CHUNK) / 2 ** layout.gshift);
  const [codeBytes, scaleBytes] = rowBytes(layout, chunks, groups);
  // Scale words hold up to 4 entries, so a part's scale buffer may end in 3 bytes of padding.
  const perPart = Math.min(
    Math.floor(maxBinding / codeBytes),
    scaleBytes === 0 ? Infinity : Math.floor((maxBinding - 4) / scaleBytes),
    65535 * Math.min(gemvRowsPerGroup(layout), gemvA8RowsPerGroup(layout)),
  );
  if (perPart < 1) {
    throw new PackError(
      `One row of ${cols} columns (${codeBytes} bytes) exceeds the largest storage binding ` +
        `(${maxBinding} bytes)`,
    );
  }
  const parts: PackedShape["parts"] = [];
  for (let rowStart = 0; rowStart < rows; rowStart += perPart) {
    const n = Math.min(perPart, rows - rowStart);
    parts.push({
      rowStart,
      rows: n,
      codeBytes: n * codeBytes,
      scaleBytes: Math.ceil((n * scaleBytes) / 4) * 4,
    });
  }
  return { chunks, groups, parts };
}

/** Builds a packed matrix from per-row code and scale writers. */
function build(
  rows: number,
  cols: number,
  layout: Layout,
  tensorScale: number,
  maxBinding: number,
  rowCodes: (r: number, out: Uint32Array) => void,
  rowScales: (r: number, groups: number, put: (g: number, entry: number) => void) => void,
): PackedMatrix {
  const gemvFloatRows = occupancyRows(layout, rows);
  if (gemvFloatRows !== undefined) layout = { ...layout, gemvFloatRows };
  const { chunks, groups, parts: shapes } = packedShape(rows, cols, layout, maxBinding);
  const V = vectorWords(layout.bits);
  const vectors = layout.bits / V;
  const parts: PackedPart[] = [];
  const chunkWords = new Uint32Array(chunks * layout.bits);
  for (const { rowStart, rows: n, codeBytes, scaleBytes } of shapes) {
    const codes = new Uint32Array(codeBytes / 4);
    const scales = new Uint32Array(scaleBytes / 4);
    const bytes = new Uint8Array(scales.buffer);
    const halves = new Uint16Array(scales.buffer);
    const size = SCALE_BYTES[layout.scale];
    for (let i = 0; i < n; i++) {
      chunkWords.fill(0);
      rowCodes(rowStart + i, chunkWords);
      for (let c = 0; c < chunks; c++) {
        for (let v = 0; v < vectors; v++) {
          const at = vectorIndex(i, c, v, chunks, layout.tpr, vectors) * V;
          for (let j = 0; j < V; j++) codes[at + j] = chunkWords[c * layout.bits + v * V + j]!;
        }
      }
      const base = i * groups;
      rowScales(rowStart + i, groups, (g, entry) => {
        if (size === 4) scales[base + g] = entry;
        else if (size === 2) halves[base + g] = entry;
        else if (size === 1) bytes[base + g] = entry;
      });
    }
    parts.push({ rowStart, rows: n, codes, scales });
  }
  return { rows, cols, chunks, groups, layout, tensorScale, parts };
}

function f16FromBits(bits: number): number {
  const buf = new DataView(new ArrayBuffer(2));
  buf.setUint16(0, bits, true);
  return buf.getFloat16(0, true);
}

function getBits(words: ArrayLike<number>, bit: number, bits: number): number {
  const w = bit >>> 5;
  const sh = bit & 31;
  let v = words[w]! >>> sh;
  if (sh + bits > 32) v |= words[w + 1]! << (32 - sh);
  return (v & ((1 << bits) - 1)) >>> 0;
}

/** Packs a dense f32 matrix. */
export function packDense(
  rows: number,
  cols: number,
  data: Float32Array,
  maxBinding: number,
  fallback?: string,
): PackedMatrix {
  const chunks = Math.ceil(cols / CHUNK);
  const layout: Layout = {
    element: "f32",
    bits: 32,
    zero: 0,
    scale: "none",
    gshift: 31,
    tpr: threadsPerRow(chunks),
  };
  const bitsView = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const packed = build(rows, cols, layout, 1, maxBinding, (r, out) => {
    out.set(bitsView.subarray(r * cols, (r + 1) * cols));
  }, () => {});
  return fallback ? { ...packed, fallback } : packed;
}

/** Decodes any matrix to f32 rows and packs those, recording why. */
export function packFallback(m: Matrix, maxBinding: number, why: string): PackedMatrix {
  const data = new Float32Array(m.rows * m.cols);
  for (let r = 0; r < m.rows; r++) decodeRow(m, r, data.subarray(r * m.cols, (r + 1) * m.cols));
  const format = storageName(m);
  const packed = packDense(
    m.rows,
    m.cols,
    data,
    maxBinding,
    `${format} decoded to f32 on load: ${why}`,
  );
  return { ...packed, fallbackFormat: format };
}

/** The project's minifloat decoders, by element kind (the CPU side of the WGSL decoders). */
const MINIFLOATS = {
  e2m1: FP4_E2M1,
  e2m3: FP6_E2M3,
  e3m2: FP6_E3M2,
  e4m3: FP8_E4M3,
  e5m2: FP8_E5M2,
} as const;

function elementValue(kind: ElementKind, code: number): number {
  if (kind === "uint") return code;
  if (kind === "f32") return new Float32Array(new Uint32Array([code]).buffer)[0]!;
  if (kind === "f16") return f16FromBits(code);
  if (kind === "bf16") return bf16ToF32(code);
  return MINIFLOATS[kind].decode(code);
}

/**
 * Decodes row `r` of a packed matrix on the CPU, as the kernels do but with each weight rounded
 * to f32 (`s·(q − z)`, `s·q + m`, `s·e`), then multiplied by the tensor scale.
 */
export function decodePackedRow(p: PackedMatrix, r: number): Float32Array {
  const part = p.parts.find((q) => r >= q.rowStart && r < q.rowStart + q.rows);
  if (!part) throw new RangeError(`Row ${r} is outside the ${p.rows}-row matrix`);
  const { layout, chunks, groups } = p;
  const i = r - part.rowStart;
  const V = vectorWords(layout.bits);
  const vectors = layout.bits / V;
  const words = new Uint32Array(layout.bits);
  const bytes = new Uint8Array(part.scales.buffer, part.scales.byteOffset);
  const halves = new Uint16Array(part.scales.buffer, part.scales.byteOffset);
  const out = new Float32Array(p.cols);
  for (let c = 0; c < chunks; c++) {
    for (let v = 0; v < vectors; v++) {
      const at = vectorIndex(i, c, v, chunks, layout.tpr, vectors) * V;
      for (let j = 0; j < V; j++) words[v * V + j] = part.codes[at + j]!;
    }
    for (let e = 0; e < CHUNK && c * CHUNK + e < p.cols; e++) {
      const k = c * CHUNK + e;
      const g = layout.gshift >= 31 ? 0 : k >> layout.gshift;
      const code = layout.element === "f32"
        ? words[e]!
        : getBits(words, e * layout.bits, layout.bits);
      const q = elementValue(layout.element, code) - (constantZero(layout) ? layout.zero : 0);
      const at = i * groups + g;
      let w: number;
      switch (layout.scale) {
        case "none":
          w = q;
          break;
        case "f16":
          w = f16FromBits(halves[at]!) * q;
          break;
        case "bf16":
          w = bf16ToF32(halves[at]!) * q;
          break;
        case "f32":
          w = new Float32Array(part.scales.buffer, part.scales.byteOffset)[at]! * q;
          break;
        case "f16zero":
          w = f16FromBits(part.scales[at]! & 0xffff) * (q - f16FromBits(part.scales[at]! >>> 16));
          break;
        case "f16min":
          w = f16FromBits(part.scales[at]! & 0xffff) * q + f16FromBits(part.scales[at]! >>> 16);
          break;
        case "e8m0":
          w = e8m0Decode(bytes[at]!) * q;
          break;
        case "e4m3":
          w = FP8_E4M3.decode(bytes[at]!) * q;
          break;
      }
      out[k] = Math.fround(Math.fround(w) * p.tensorScale);
    }
  }
  return out;
}

/** The generic packer, for the format plans of `pack_quantized.ts`. */
export { build as buildPacked };
