/**
 * The `nvfp4` format module: NVIDIA's NVFP4 (`nvfp4.ts`): 16 E2M1 elements under an E4M3 block
 * scale, all under an f32 per-tensor scale. Its grid fixes the tensor scale from the whole matrix
 * at `init` and each block's scale from the block's absolute maximum, as the encoder does.
 *
 * @module
 */
import type { CodedMatrix, RowCodec } from "../../core/coded.ts";
import { fixedFormat } from "./element_format.ts";
import {
  asCoded,
  codecRows,
  codecsByName,
  type GroupGrid,
  type WeightFormat,
  WrongFormatError,
} from "./format.ts";
import { type GpuPlan, scalesThenCodes } from "./gpu_layout.ts";
import { FP4_E2M1, FP8_E4M3 } from "./minifloat.ts";
import { packCodes } from "./mx.ts";
import { NVFP4_BLOCK_SIZE, nvfp4GlobalScale } from "./nvfp4.ts";
import { NVFP4_ROW_CODEC } from "./row_codecs.ts";

const SATURATE = { saturate: true } as const;
const E2M1_MAX = 6;
const E4M3_MAX = 448;
/** As `nvfp4.ts`: the Python scalar 1/6 against a float32 tensor, rounded to float32. */
const RECIPROCAL_E2M1_MAX = Math.fround(1 / E2M1_MAX);

/** E2M1 codes under E4M3 block scales; the kernels multiply by the inverse tensor scale. */
function nvfp4Gpu(m: CodedMatrix): GpuPlan {
  return scalesThenCodes(
    m,
    "e2m1",
    4,
    "e4m3",
    4,
    (cols) => Math.ceil(cols / 16),
    1,
    Math.fround(1 / m.tensorScale),
  );
}

function nvfp4Grid(codec: RowCodec, rows: number, cols: number): GroupGrid {
  const blocks = Math.ceil(cols / NVFP4_BLOCK_SIZE);
  const padded = blocks * NVFP4_BLOCK_SIZE;
  const scaleCodes = new Uint8Array(rows * blocks);
  const encodeScales = new Float32Array(rows * blocks);
  const decodeScales = new Float32Array(rows * blocks);
  const codes = new Uint8Array(rows * padded);
  let g = 1;
  return {
    groupSize: NVFP4_BLOCK_SIZE,
    init(w) {
      g = nvfp4GlobalScale(Float32Array.from(w));
    },
    fit(w, c0, c1) {
      const b = Math.floor(c0 / NVFP4_BLOCK_SIZE);
      const inverseG = Math.fround(1 / g);
      for (let r = 0; r < rows; r++) {
        let vmax = 0;
        for (let c = c0; c < c1; c++) {
          vmax = Math.max(vmax, Math.abs(Math.fround(w[r * cols + c]!)));
        }
        const scale = Math.min(Math.fround(g * Math.fround(vmax * RECIPROCAL_E2M1_MAX)), E4M3_MAX);
        const code = FP8_E4M3.encode(scale, SATURATE);
        const t = Math.fround(FP8_E4M3.decode(code) * inverseG);
        const i = r * blocks + b;
        scaleCodes[i] = code;
        encodeScales[i] = t === 0 ? 0 : Math.fround(1 / t);
        decodeScales[i] = Math.fround(FP8_E4M3.decode(code) / g);
      }
    },
    round(r, c, w) {
      const i = r * blocks + Math.floor(c / NVFP4_BLOCK_SIZE);
      const code = FP4_E2M1.encode(Math.fround(Math.fround(w) * encodeScales[i]!), SATURATE);
      codes[r * padded + c] = code;
      return Math.fround(FP4_E2M1.decode(code) * decodeScales[i]!);
    },
    build() {
      const rowBytes = codec.rowBytes(cols);
      const data = new Uint8Array(rows * rowBytes);
      for (let r = 0; r < rows; r++) {
        const out = data.subarray(r * rowBytes, (r + 1) * rowBytes);
        out.set(scaleCodes.subarray(r * blocks, (r + 1) * blocks));
        out.set(packCodes(codes.subarray(r * padded, (r + 1) * padded), 4), blocks);
      }
      return { kind: "coded", codec: codec.name, rows, cols, rowBytes, data, tensorScale: g };
    },
  };
}

/** NVFP4 (`nvfp4` in suites). */
export const NVFP4_FORMAT: WeightFormat = {
  name: "nvfp4",
  description: "NVFP4: 16 E2M1 elements + an E4M3 scale per block, and an f32 tensor scale",
  codecs: [NVFP4_ROW_CODEC],
  elements: [
    fixedFormat(
      "nvfp4",
      NVFP4_ROW_CODEC,
      4,
      "NVFP4: E2M1 × 16 + an E4M3 scale, and an f32 tensor scale",
      {
        minimum: false,
        scales: { words: "E4M3 block scales and an f32 tensor scale" },
        tensorScale: true,
      },
    ),
  ],
  // Half an E2M1 ulp (1 in [4, 6]) when the E4M3 block scale rounded up by 2^-4.
  bounds: [{ pattern: /^nvfp4$/, bound: { rel: (1 + 2 ** -4) / 6 + 2 ** -10, scope: "block" } }],
  owns: (codec) => codec === "nvfp4",
  ...codecRows("nvfp4", codecsByName([NVFP4_ROW_CODEC])),
  gpu: (m) => nvfp4Gpu(asCoded("nvfp4", m)),
  grid(element, settings, rows, cols) {
    const codec = element.kind === "coded" ? element.rowCodec(settings) : undefined;
    if (codec?.name !== "nvfp4") {
      throw new WrongFormatError(`Format "nvfp4" has no grid for "${element.name}"`);
    }
    return nvfp4Grid(codec, rows, cols);
  },
};
