/**
 * The `aqlm` format module: AQLM's additive codebooks (`aqlm.ts`; codecs `aqlm-<M>x<B>-g<g>`).
 * Suites name a scheme by `aqlm_<M>x<B>` — `M` codebooks of `2^B` codewords — with the group of
 * weights one sum of codewords encodes (`in_group_size`) in `group` (0: the reference's 8; the
 * scales are one half per output channel, so `group` says nothing else here): `aqlm_1x16` and
 * `aqlm_2x8` are the paper's 2-bit schemes. Small models cannot amortise such codebooks (bits per
 * weight count them) and want groups below 8, which a suite's `group` cannot say: the schemes for
 * them carry their group in the name, `aqlm_<M>x<B>_g<g>`, and take `group` 0 only.
 *
 * Rows share their codebooks, so a row cannot be encoded alone: the element formats' own
 * quantization (what `rtn` runs) is the reference's k-means initialisation of the whole matrix
 * (`aqlm_kmeans.ts`, seed 0, 100 iterations: its `init_max_iter`); the `aqlm` method optimises
 * from there; `deno task perf` times seeded random codes instead (`timingMatrix`: k-means over
 * 2^16 codewords of a 1024 × 1024 matrix is hours of CPU). There is no fixed grid for GPTQ. On
 * WebGPU the codes, codebooks and scales are uploaded as they are ({@linkcode aqlmGpuPlan}) and
 * `kernels/webgpu/aqlm_wgsl.ts` decodes them inside the matmul.
 *
 * @module
 */
import type { RowCodec } from "../../core/coded.ts";
import { seededRandom } from "../../core/random.ts";
import {
  aqlmCodecName,
  aqlmGroups,
  aqlmMatrixBits,
  aqlmMisfit,
  aqlmRowBytes,
  type AqlmScheme,
  aqlmSchemeOf,
  buildAqlmMatrix,
  decodeAqlmRow,
  parseAqlmCodec,
} from "./aqlm.ts";
import { aqlmInit } from "./aqlm_kmeans.ts";
import { checked, type CodedElementFormat, type FormatSettings } from "./element_format.ts";
import { asCoded, type QuantizedWeight, type WeightFormat } from "./format.ts";
import type { AqlmGpuPlan } from "./gpu_layout.ts";
import { f16ToF32 } from "./gguf/numeric.ts";

/** The reference's `in_group_size`: a suite `group` of 0 means this. */
export const AQLM_DEFAULT_GROUP = 8;

/** The reference's `init_max_iter`. */
export const AQLM_INIT_ITERATIONS = 100;

/**
 * The schemes suites name: `[codebooks, bits]` (group from the suite) or `[codebooks, bits, g]`
 * (`aqlm_<M>x<B>_g<g>`: 2 or 3 bits of codes in groups of 2 or 4).
 */
const SCHEMES: readonly [number, number, number?][] = [
  [1, 16],
  [2, 8],
  [1, 8, 4],
  [2, 4, 4],
  [1, 4, 2],
  [3, 4, 4],
];

/** Thrown when a row of an AQLM codec is asked to encode or decode without its codebooks. */
export class AqlmRowCodecError extends Error {
  override name = "AqlmRowCodecError";
}

/** The scheme a suite format of `codebooks × bits` (group `fixed`, if named) stores. */
export function aqlmSchemeFor(
  codebooks: number,
  bits: number,
  settings: FormatSettings,
  fixed?: number,
): AqlmScheme {
  return { codebooks, bits, groupSize: fixed ?? (settings.group || AQLM_DEFAULT_GROUP) };
}

/**
 * The row view of a scheme that element formats must give: its name and sizes. Its rows decode
 * only with the matrix's codebooks, so `encodeRow` and `decodeRow` throw; bits per weight here
 * are the codes' and the row scale's, without the codebooks (which only a matrix amortises).
 */
function schemeRows(scheme: AqlmScheme): RowCodec {
  const name = aqlmCodecName(scheme);
  const refuse = () => {
    throw new AqlmRowCodecError(
      `Codec "${name}" shares codebooks across rows; quantize and decode whole matrices`,
    );
  };
  return {
    name,
    blockSize: scheme.groupSize,
    rowBytes: (cols) => aqlmRowBytes(scheme, cols),
    bitsPerWeight: (cols) => (aqlmRowBytes(scheme, cols) * 8 + 16) / cols,
    encodeRow: refuse,
    decodeRow: refuse,
    tensorScale: () => 1,
  };
}

function element(codebooks: number, bits: number, fixed?: number): CodedElementFormat {
  const name = `aqlm_${codebooks}x${bits}` + (fixed ? `_g${fixed}` : "");
  const schemeOf = (settings: FormatSettings) => aqlmSchemeFor(codebooks, bits, settings, fixed);
  const format: CodedElementFormat = {
    name,
    kind: "coded",
    codec: `aqlm-${codebooks}x${bits}-g${fixed ?? "<group>"}`,
    // A named group is fixed, as a block format's block (perf then times it at that group only).
    block: fixed,
    bits: codebooks * bits / (fixed ?? AQLM_DEFAULT_GROUP),
    description: `AQLM: sums of ${codebooks} codeword(s) from codebooks of 2^${bits} over ` +
      (fixed ? `groups of ${fixed}` : "groups of 8 weights unless group says otherwise") +
      `, an f16 scale per output channel`,
    unsupported(settings) {
      if (settings.group < 0) {
        return `format "${name}" has one scale per output channel; group ${settings.group} ` +
          `(per tensor) does not apply`;
      }
      if (fixed !== undefined && settings.group !== 0 && settings.group !== fixed) {
        return `format "${name}" encodes groups of ${fixed} (in its name); group ` +
          `${settings.group} contradicts it (omit group)`;
      }
      if (!settings.symmetric) {
        return `format "${name}" has no zero point; symmetric: false contradicts it`;
      }
      const dtype = settings.options.scale_dtype;
      if (dtype !== undefined && dtype !== "f16") {
        return `format "${name}" stores f16 codebooks and scales; scale_dtype ` +
          `${JSON.stringify(dtype)} contradicts it`;
      }
      return aqlmMisfit(schemeOf(settings));
    },
    rowCodec: (settings) => schemeRows(schemeOf(settings)),
    bitsPerWeight: (settings, rows, cols) =>
      aqlmMatrixBits(schemeOf(settings), rows, cols) / (rows * cols),
    quantize: (settings, m) =>
      checked(format, settings, () => {
        const scheme = schemeOf(settings);
        const random = seededRandom(0, `aqlm k-means ${m.rows}x${m.cols}`);
        const init = aqlmInit(m.data, m.rows, m.cols, scheme, AQLM_INIT_ITERATIONS, random);
        return buildAqlmMatrix({ scheme, rows: m.rows, cols: m.cols, ...init });
      }),
    timingMatrix(settings, rows, cols, random = seededRandom(0, `aqlm timing ${rows}x${cols}`)) {
      // Codes uniform over the codebooks, codewords and scales of a k-means start's magnitude.
      const scheme = schemeOf(settings);
      const size = 2 ** bits;
      return buildAqlmMatrix({
        scheme,
        rows,
        cols,
        codes: Int32Array.from(
          { length: rows * aqlmGroups(scheme, cols) * codebooks },
          () => Math.floor(random() * size),
        ),
        codebooks: Float32Array.from(
          { length: codebooks * size * scheme.groupSize },
          () => (random() - 0.5) / Math.sqrt(cols),
        ),
        scales: Float32Array.from({ length: rows }, () => 0.5 + random()),
      });
    },
  };
  return format;
}

/** The suite's AQLM element formats. */
export const AQLM_ELEMENTS: readonly CodedElementFormat[] = SCHEMES.map(([m, b, g]) =>
  element(m, b, g)
);

/** The WebGPU plan of an AQLM matrix (see `AqlmGpuPlan`): its parts, word-aligned. */
export function aqlmGpuPlan(m: QuantizedWeight): AqlmGpuPlan {
  const c = asCoded("aqlm", m);
  const scheme = aqlmSchemeOf(c);
  const rowWords = Math.ceil(c.rowBytes / 4);
  const codes = new Uint32Array(Math.max(1, c.rows * rowWords));
  const bytes = new Uint8Array(codes.buffer);
  for (let r = 0; r < c.rows; r++) {
    bytes.set(c.data.subarray(r * c.rowBytes, (r + 1) * c.rowBytes), r * rowWords * 4);
  }
  const halves = c.sides?.codebooks as Uint16Array;
  const g = scheme.groupSize;
  const stride = Math.ceil(g / 2);
  const words = halves.length / g;
  const codebook = new Uint32Array(words * stride);
  for (let w = 0; w < words; w++) {
    for (let i = 0; i < g; i++) {
      codebook[w * stride + (i >> 1)]! |= halves[w * g + i]! << (16 * (i & 1));
    }
  }
  return {
    kind: "aqlm",
    ...scheme,
    rowWords,
    codes,
    stride,
    codebook,
    scales: Float32Array.from(c.sides?.scales as Uint16Array, f16ToF32),
  };
}

/** AQLM's additive codebook matrices. */
export const AQLM_FORMAT: WeightFormat = {
  name: "aqlm",
  description: "AQLM: sums of codewords from per-matrix f16 codebooks, an f16 scale per row",
  // Codecs are made from settings (the scheme and group); none is listed up front.
  codecs: [],
  elements: AQLM_ELEMENTS,
  bounds: [],
  owns: (codec) => parseAqlmCodec(codec) !== undefined,
  decodeRow: (m, r, out) => decodeAqlmRow(asCoded("aqlm", m), r, out),
  bits(m) {
    const c = asCoded("aqlm", m);
    return aqlmMatrixBits(aqlmSchemeOf(c), c.rows, c.cols);
  },
  gpu: aqlmGpuPlan,
  grid: "none",
};
