/**
 * Repacking of block-coded matrices ({@linkcode CodedMatrix}) into the WebGPU layouts of
 * `pack.ts`, codec by codec, from the row byte layouts `kernels/formats/row_codecs.ts` and
 * `scaled_minifloat.ts` document:
 *
 * | codec                         | elements            | scales                     |
 * | ----------------------------- | ------------------- | -------------------------- |
 * | `q4_0`, `q5_0`, `q8_0`        | unsigned, zero 8/16/128 | f16 per 32             |
 * | `q4_1`, `q5_1`                | unsigned            | f16 scale + f16 min per 32 |
 * | `gguf_mxfp4`, `mxfp4`, `mxfp6_*`, `mxfp8_*` | E2M1 / E2M3 / E3M2 / E4M3 / E5M2 | E8M0 per 32 |
 * | `mxint8`                      | unsigned, zero 128, ×2^-6 | E8M0 per 32          |
 * | `nvfp4`                       | E2M1                | E4M3 per 16, ×1/tensor scale |
 * | `<fp8/fp6/fp4>-ch/-g<N>/-pt`  | minifloat           | f32/f16/bf16 per row or group, or per tensor |
 * | `f16`, `bf16`                 | IEEE half / bfloat16 | none                      |
 *
 * Other codecs (K-quants, IQ4_NL, `q2_0`, groups that are not powers of two) are decoded
 * to f32 on load. Every repacked matrix is checked against the codec's own decoder on its first
 * and last rows; a mismatch (a layout this file does not know) also falls back to f32.
 *
 * @module
 */
import type { CodedMatrix } from "../../core/coded.ts";
import {
  buildPacked,
  CHUNK,
  decodePackedRow,
  type ElementKind,
  type Layout,
  type PackedMatrix,
  packFallback,
  putBits,
  type ScaleKind,
  threadsPerRow,
} from "./pack.ts";
import { decodeRow } from "../formats/matrix.ts";

/** Codes of one row as little-endian chunk words, and its scale entries. */
interface RowReader {
  codes(row: Uint8Array, words: Uint32Array): void;
  scales(row: Uint8Array, groups: number, put: (g: number, entry: number) => void): void;
}

interface Plan {
  layout: Omit<Layout, "tpr">;
  tensorScale: number;
  reader: RowReader;
}

const u16 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);
const u32 = (b: Uint8Array, o: number) =>
  (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;

/** ggml's 32-element blocks: low nibbles are elements 0–15, high nibbles 16–31. */
function ggmlBlocks(
  blockBytes: number,
  bits: 4 | 5 | 8,
  scale: "f16" | "f16min",
  zero: number,
): Plan {
  const head = (scale === "f16min" ? 4 : 2) + (bits === 5 ? 4 : 0);
  return {
    layout: { element: "uint", bits, zero, scale, gshift: 5 },
    tensorScale: 1,
    reader: {
      codes(row, words) {
        for (let b = 0; b * blockBytes < row.length; b++) {
          const o = b * blockBytes;
          const put = (e: number, q: number) => putBits(words, (b * CHUNK + e) * bits, bits, q);
          if (bits === 8) {
            for (let e = 0; e < 32; e++) put(e, row[o + 2 + e]! ^ 0x80);
            continue;
          }
          const qh = bits === 5 ? u32(row, o + head - 4) : 0;
          for (let j = 0; j < 16; j++) {
            const q = row[o + head + j]!;
            const h0 = bits === 5 ? ((qh >>> j) & 1) << 4 : 0;
            const h1 = bits === 5 ? ((qh >>> (j + 16)) & 1) << 4 : 0;
            put(j, (q & 15) | h0);
            put(j + 16, (q >> 4) | h1);
          }
        }
      },
      scales(row, _groups, put) {
        for (let b = 0; b * blockBytes < row.length; b++) {
          const o = b * blockBytes;
          put(b, scale === "f16min" ? (u16(row, o) | (u16(row, o + 2) << 16)) >>> 0 : u16(row, o));
        }
      },
    },
  };
}

/** Scale bytes first (`nb` of them), then element codes packed LSB-first from the next byte. */
function scalesThenCodes(
  element: ElementKind,
  bits: number,
  scale: ScaleKind,
  gshift: number,
  scaleCount: (cols: number) => number,
  scaleSize: number,
  tensorScale: number,
  cols: number,
  flip = 0,
): Plan {
  const nScales = scaleCount(cols);
  const codeStart = nScales * scaleSize;
  return {
    layout: { element, bits, zero: flip ? 128 : 0, scale, gshift },
    tensorScale,
    reader: {
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
    },
  };
}

const MX_ELEMENTS: Record<string, [ElementKind, number]> = {
  mxfp4: ["e2m1", 4],
  mxfp6_e2m3: ["e2m3", 6],
  mxfp6_e3m2: ["e3m2", 6],
  mxfp8_e4m3: ["e4m3", 8],
  mxfp8_e5m2: ["e5m2", 8],
};

const SCALED_ELEMENTS: Record<string, [ElementKind, number]> = {
  fp4_e2m1: ["e2m1", 4],
  fp6_e2m3: ["e2m3", 6],
  fp6_e3m2: ["e3m2", 6],
  fp8_e4m3: ["e4m3", 8],
  fp8_e5m2: ["e5m2", 8],
};

/** How to repack a codec's rows, or why it cannot be. */
function plan(m: CodedMatrix): Plan | string {
  const nb32 = Math.ceil(m.cols / 32);
  switch (m.codec) {
    case "q4_0":
      return ggmlBlocks(18, 4, "f16", 8);
    case "q4_1":
      return ggmlBlocks(20, 4, "f16min", 0);
    case "q5_0":
      return ggmlBlocks(22, 5, "f16", 16);
    case "q5_1":
      return ggmlBlocks(24, 5, "f16min", 0);
    case "q8_0":
      return ggmlBlocks(34, 8, "f16", 128);
    case "gguf_mxfp4":
      return {
        layout: { element: "e2m1", bits: 4, zero: 0, scale: "e8m0", gshift: 5 },
        tensorScale: 1,
        reader: {
          codes(row, words) {
            for (let b = 0; b * 17 < row.length; b++) {
              for (let j = 0; j < 16; j++) {
                const q = row[b * 17 + 1 + j]!;
                putBits(words, (b * 32 + j) * 4, 4, q & 15);
                putBits(words, (b * 32 + j + 16) * 4, 4, q >> 4);
              }
            }
          },
          scales(row, _groups, put) {
            for (let b = 0; b * 17 < row.length; b++) put(b, row[b * 17]!);
          },
        },
      };
    case "f16":
    case "bf16":
      return scalesThenCodes(m.codec, 16, "none", 31, () => 0, 0, 1, m.cols);
    case "mxint8":
      return scalesThenCodes("uint", 8, "e8m0", 5, () => nb32, 1, 2 ** -6, m.cols, 0x80);
    case "nvfp4":
      return scalesThenCodes(
        "e2m1",
        4,
        "e4m3",
        4,
        (cols) => Math.ceil(cols / 16),
        1,
        Math.fround(1 / m.tensorScale),
        m.cols,
      );
  }
  const mx = MX_ELEMENTS[m.codec];
  if (mx) return scalesThenCodes(mx[0], mx[1], "e8m0", 5, () => nb32, 1, 1, m.cols);
  const scaled = /^(fp\d_e\dm\d)-(ch|pt|g(\d+))(?:-(f16|bf16|f32))?$/.exec(m.codec);
  const element = scaled ? SCALED_ELEMENTS[scaled[1]!] : undefined;
  if (scaled && element) {
    const [, , kind, group, dtype] = scaled;
    if (kind === "pt") {
      return scalesThenCodes(element[0], element[1], "none", 31, () => 0, 0, m.tensorScale, m.cols);
    }
    const size = Number(group ?? m.cols);
    const gshift = kind === "ch" || size >= m.cols ? 31 : Math.log2(size);
    if (!Number.isInteger(gshift) || gshift < 2) return `group size ${size} is not a power of two`;
    const scale = dtype as "f16" | "bf16" | "f32";
    return scalesThenCodes(
      element[0],
      element[1],
      scale,
      gshift,
      (cols) => (gshift === 31 ? 1 : Math.ceil(cols / size)),
      scale === "f32" ? 4 : 2,
      1,
      m.cols,
    );
  }
  return `no WGSL decoder for codec "${m.codec}"`;
}

/** Largest difference allowed between the codec's decoder and the repacked layout's. */
const CHECK_TOLERANCE = 2 ** -20;

/** Whether two decoded rows agree (to float32 rounding of a rescaled block scale). */
function rowsAgree(a: Float32Array, b: Float32Array): boolean {
  let max = 0;
  for (const v of b) if (Number.isFinite(v)) max = Math.max(max, Math.abs(v));
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (Number.isNaN(y) ? !Number.isNaN(x) : !(Math.abs(x - y) <= CHECK_TOLERANCE * max)) {
      return false;
    }
  }
  return true;
}

/** Repacks a coded matrix for the WGSL kernels, or decodes it to f32 (recording why). */
export function packCoded(m: CodedMatrix, maxBinding: number): PackedMatrix {
  const p = plan(m);
  if (typeof p === "string") return packFallback(m, maxBinding, p);
  const chunks = Math.ceil(m.cols / CHUNK);
  const layout: Layout = { ...p.layout, tpr: threadsPerRow(chunks) };
  const row = (r: number) => m.data.subarray(r * m.rowBytes, (r + 1) * m.rowBytes);
  const packed = buildPacked(
    m.rows,
    m.cols,
    layout,
    p.tensorScale,
    maxBinding,
    (r, words) => p.reader.codes(row(r), words),
    (r, groups, put) => p.reader.scales(row(r), groups, put),
  );
  const expected = new Float32Array(m.cols);
  for (const r of new Set([0, m.rows - 1])) {
    decodeRow(m, r, expected);
    if (!rowsAgree(decodePackedRow(packed, r), expected)) {
      return packFallback(m, maxBinding, `repacked row ${r} differs from the codec's decoder`);
    }
  }
  return packed;
}
