/**
 * The `ggml` format module: ggml's block types as GGUF files store them (`gguf/`; codecs `q4_0`
 * … `q6_k`, `q2_0`, `iq4_nl`, `gguf_mxfp4`, and `f16`/`bf16` storage). The WebGPU kernels run
 * the 32-element legacy blocks (`q4_0`, `q4_1`, `q5_0`, `q5_1`, `q8_0`), ggml's MXFP4 block and
 * f16/bf16; the K-quants, IQ4_NL and `q2_0` have no WGSL decoder and run decoded to f32. The
 * types' rounding does not split into fixed group scales (K-quants search their sub-block
 * scales), so there is no grid.
 *
 * @module
 */
import type { CodedMatrix } from "../../core/coded.ts";
import { GGUF_CODECS } from "./codecs.ts";
import { asCoded, codecBits, codecDecodeRow, type WeightFormat } from "./format.ts";
import { type GpuPlan, putBits, rowPlan, scalesThenCodes, u16, u32 } from "./gpu_layout.ts";

/** Elements per chunk of the GPU layout. */
const CHUNK = 32;

/** ggml's 32-element blocks: low nibbles are elements 0–15, high nibbles 16–31. */
function ggmlBlocks(
  m: CodedMatrix,
  blockBytes: number,
  bits: 4 | 5 | 8,
  scale: "f16" | "f16min",
  zero: number,
): GpuPlan {
  const head = (scale === "f16min" ? 4 : 2) + (bits === 5 ? 4 : 0);
  return rowPlan(m, { element: "uint", bits, zero, scale, gshift: 5 }, 1, {
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
  });
}

/** ggml's MXFP4 block: an E8M0 byte, then 16 bytes of E2M1 pairs (low nibbles first). */
function ggmlMxfp4(m: CodedMatrix): GpuPlan {
  return rowPlan(m, { element: "e2m1", bits: 4, zero: 0, scale: "e8m0", gshift: 5 }, 1, {
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
  });
}

function ggmlGpu(m: CodedMatrix): GpuPlan | string {
  switch (m.codec) {
    case "q4_0":
      return ggmlBlocks(m, 18, 4, "f16", 8);
    case "q4_1":
      return ggmlBlocks(m, 20, 4, "f16min", 0);
    case "q5_0":
      return ggmlBlocks(m, 22, 5, "f16", 16);
    case "q5_1":
      return ggmlBlocks(m, 24, 5, "f16min", 0);
    case "q8_0":
      return ggmlBlocks(m, 34, 8, "f16", 128);
    case "gguf_mxfp4":
      return ggmlMxfp4(m);
    case "f16":
    case "bf16":
      return scalesThenCodes(m, m.codec, 16, "none", 31, () => 0, 0, 1);
  }
  return `no WGSL decoder for codec "${m.codec}"`;
}

const CODECS: ReadonlySet<string> = new Set(GGUF_CODECS.map(([name]) => name));

/** ggml block types (`q4_0` … `q6_k`, `iq4_nl`, `gguf_mxfp4`, `f16`, `bf16` in suites). */
export const GGML_FORMAT: WeightFormat = {
  name: "ggml",
  description: "ggml blocks as GGUF stores them (legacy quants, K-quants, IQ4_NL, MXFP4, f16)",
  owns: (codec) => CODECS.has(codec),
  decodeRow: codecDecodeRow,
  bits: codecBits,
  gpu: (m) => ggmlGpu(asCoded("ggml", m)),
  grid: "none",
};
