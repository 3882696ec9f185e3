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
import type { CodedMatrix, RowCodec } from "../../core/coded.ts";
import {
  type CodedElementFormat,
  E8M0_SCALES,
  fixedFormat,
  type FixedScales,
} from "./element_format.ts";
import { asCoded, type CodecBound, codecRows, codecsByName, type WeightFormat } from "./format.ts";
import { ggmlTypeByName } from "./gguf/blocks.ts";
import { type GpuPlan, putBits, rowPlan, scalesThenCodes, u16, u32 } from "./gpu_layout.ts";
import { ggufRowCodec } from "./row_codecs.ts";

/** ggml types with an encoder, by codec name. */
export const GGUF_CODECS: readonly (readonly [string, string])[] = [
  ["q4_0", "Q4_0"],
  ["q4_1", "Q4_1"],
  ["q5_0", "Q5_0"],
  ["q5_1", "Q5_1"],
  ["q8_0", "Q8_0"],
  ["q2_0", "Q2_0"],
  ["q2_k", "Q2_K"],
  ["q3_k", "Q3_K"],
  ["q4_k", "Q4_K"],
  ["q5_k", "Q5_K"],
  ["q6_k", "Q6_K"],
  ["iq4_nl", "IQ4_NL"],
  ["gguf_mxfp4", "MXFP4"],
  ["f16", "F16"],
  ["bf16", "BF16"],
];

const CODECS: readonly RowCodec[] = GGUF_CODECS.map(([name, type]) =>
  ggufRowCodec(name, ggmlTypeByName(type))
);
const codecNamed = codecsByName(CODECS);

const GGML_SCALES: FixedScales = { dtype: "f16", words: "f16 block scales" };
const NO_SCALES: FixedScales = { words: "no scales" };

/** The element format of ggml type `name` (its codec's name too). */
function ggml(
  name: string,
  bits: number,
  description: string,
  minimum = false,
): CodedElementFormat {
  return fixedFormat(name, codecNamed(name), bits, `ggml ${description}`, {
    minimum,
    scales: GGML_SCALES,
  });
}

/** `{ rel, scope: "block" }` for codec `name`; `searches` for encoders that search scales. */
function blockBound(name: string, rel: number, searches = false): CodecBound {
  return {
    pattern: new RegExp(`^${name}$`),
    bound: searches ? { rel, scope: "block", searches } : { rel, scope: "block" },
  };
}

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

const OWNED: ReadonlySet<string> = new Set(GGUF_CODECS.map(([name]) => name));

/** ggml block types (`q4_0` … `q6_k`, `iq4_nl`, `gguf_mxfp4`, `f16`, `bf16` in suites). */
export const GGML_FORMAT: WeightFormat = {
  name: "ggml",
  description: "ggml blocks as GGUF stores them (legacy quants, K-quants, IQ4_NL, MXFP4, f16)",
  codecs: CODECS,
  elements: [
    fixedFormat("f16", codecNamed("f16"), 16, "weights rounded to IEEE float16 (ties to even)", {
      minimum: false,
      scales: NO_SCALES,
    }),
    fixedFormat("bf16", codecNamed("bf16"), 16, "weights rounded to bfloat16 (ties to even)", {
      minimum: false,
      scales: NO_SCALES,
    }),
    ggml("q4_0", 4, "Q4_0: 32 × 4 bits + f16 scale"),
    ggml("q4_1", 4, "Q4_1: 32 × 4 bits + f16 scale and minimum", true),
    ggml("q5_0", 5, "Q5_0: 32 × 5 bits + f16 scale"),
    ggml("q5_1", 5, "Q5_1: 32 × 5 bits + f16 scale and minimum", true),
    ggml("q8_0", 8, "Q8_0: 32 × 8 bits + f16 scale"),
    ggml("q2_0", 2, "Q2_0: 64 × 2 bits + f16 scale"),
    ggml("q2_k", 2, "Q2_K: 256 × 2 bits, 4-bit sub-block scales and minima", true),
    ggml("q3_k", 3, "Q3_K: 256 × 3 bits, 6-bit sub-block scales"),
    ggml("q4_k", 4, "Q4_K: 256 × 4 bits, 6-bit sub-block scales and minima", true),
    ggml("q5_k", 5, "Q5_K: 256 × 5 bits, 6-bit sub-block scales and minima", true),
    ggml("q6_k", 6, "Q6_K: 256 × 6 bits, 8-bit sub-block scales"),
    ggml("iq4_nl", 4, "IQ4_NL: 32 × 4-bit non-linear levels + f16 scale"),
    fixedFormat(
      "gguf_mxfp4",
      codecNamed("gguf_mxfp4"),
      4,
      "ggml MXFP4 block: 32 × E2M1 + an E8M0 scale",
      { minimum: false, scales: E8M0_SCALES },
    ),
  ],
  bounds: [
    // Half an ulp: 2^-11 relative for f16 normals, half the smallest subnormal below; 2^-8 for
    // bf16.
    { pattern: /^f16$/, bound: { rel: 2 ** -11, abs: 2 ** -25, scope: "element" } },
    { pattern: /^bf16$/, bound: { rel: 2 ** -8, scope: "element" } },
    // Linear grids with an f16 scale: half a step, or a whole one where the code range stops a
    // step short of +amax (q4_0: d = max/-8, codes -8…7), plus the scale's f16 rounding.
    blockBound("q8_0", 1 / 254 + 2 ** -10),
    blockBound("q4_0", 1 / 8 + 2 ** -9),
    blockBound("q5_0", 1 / 16 + 2 ** -9),
    blockBound("q4_1", 1 / 15 + 2 ** -9),
    blockBound("q5_1", 1 / 31 + 2 ** -9),
    blockBound("q2_0", 1 / 2 + 2 ** -10),
    // IQ4_NL: half the widest gap of its levels (24 of 127), the grid stretched by up to 127/120
    // by the scale search.
    blockBound("iq4_nl", (12 / 127) * (127 / 120), true),
    // K-quants: sub-block scales and minima quantized to 4–8 bits relative to the super-block's;
    // bounds are a step of each grid over the super-block amax. Their encoders search scales.
    blockBound("q2_k", 0.4, true),
    blockBound("q3_k", 0.25, true),
    blockBound("q4_k", 0.1, true),
    blockBound("q5_k", 0.06, true),
    blockBound("q6_k", 1 / 32 + 2 ** -8, true),
    // As OCP MXFP4 (`mx_format.ts`): the clamp to 6 or half an ulp of the top binade, over amax.
    blockBound("gguf_mxfp4", 0.25),
  ],
  owns: (codec) => OWNED.has(codec),
  ...codecRows("ggml", codecNamed),
  gpu: (m) => ggmlGpu(asCoded("ggml", m)),
  grid: "none",
};
