/**
 * The `scaled_minifloat` format module: FP8/FP6/FP4 elements with a float scale (`amax /
 * elem_max`) per channel, group or tensor (`scaled_minifloat.ts`; codecs `fp8_e4m3-ch-f32`,
 * `fp4_e2m1-g64-bf16`, `fp8_e4m3-pt`, …). Its grid fixes each group's scale from the group's
 * absolute maximum, as the encoder does.
 *
 * @module
 */
import type { CodedMatrix, RowCodec } from "../../core/coded.ts";
import type { ScaleDtype } from "../../core/model.ts";
import {
  asCoded,
  codecBits,
  codecDecodeRow,
  type GroupGrid,
  type WeightFormat,
  WrongFormatError,
} from "./format.ts";
import { type ElementKind, type GpuPlan, scalesThenCodes } from "./gpu_layout.ts";
import { groupColumns } from "./int_format.ts";
import type { Minifloat } from "./minifloat.ts";
import { packCodes } from "./mx.ts";
import { PER_TENSOR, SCALED_ELEMENTS, scaledMinifloatScale } from "./scaled_minifloat.ts";
import { SCALE_DTYPE_BITS, writeScale } from "./scale_dtype.ts";

const SATURATE = { saturate: true } as const;

/** The codec names of scaled minifloats (`scaledMinifloatName`). */
const CODEC_NAME = /^(fp\d_e\dm\d)-(ch|pt|g(\d+))(?:-(f16|bf16|f32))?$/;

const GPU_ELEMENTS: Readonly<Record<string, [ElementKind, number]>> = {
  fp4_e2m1: ["e2m1", 4],
  fp6_e2m3: ["e2m3", 6],
  fp6_e3m2: ["e3m2", 6],
  fp8_e4m3: ["e4m3", 8],
  fp8_e5m2: ["e5m2", 8],
};

/** Scales first (per row, group, or none per tensor), then the codes; powers-of-two groups. */
function scaledGpu(m: CodedMatrix): GpuPlan | string {
  const scaled = CODEC_NAME.exec(m.codec);
  const element = scaled ? GPU_ELEMENTS[scaled[1]!] : undefined;
  if (!scaled || !element) return `no WGSL decoder for codec "${m.codec}"`;
  const [, , kind, group, dtype] = scaled;
  if (kind === "pt") {
    return scalesThenCodes(m, element[0], element[1], "none", 31, () => 0, 0, m.tensorScale);
  }
  const size = Number(group ?? m.cols);
  const gshift = kind === "ch" || size >= m.cols ? 31 : Math.log2(size);
  if (!Number.isInteger(gshift) || gshift < 2) return `group size ${size} is not a power of two`;
  const scale = dtype as "f16" | "bf16" | "f32";
  return scalesThenCodes(
    m,
    element[0],
    element[1],
    scale,
    gshift,
    (cols) => (gshift === 31 ? 1 : Math.ceil(cols / size)),
    scale === "f32" ? 4 : 2,
    1,
  );
}

function scaledGrid(
  codec: RowCodec,
  element: Minifloat,
  group: number,
  scaleDtype: ScaleDtype,
  rows: number,
  cols: number,
): GroupGrid {
  const perTensor = group === PER_TENSOR;
  const groupSize = groupColumns(group, cols);
  const groups = Math.ceil(cols / groupSize);
  const scales = new Float32Array(rows * groups);
  const codes = new Uint8Array(rows * cols);
  let tensorScale = 1;
  const table = Float32Array.from({ length: 1 << element.bits }, (_, c) => element.decode(c));
  const fitRows = (w: Float64Array, c0: number, c1: number) => {
    const g = Math.floor(c0 / groupSize);
    for (let r = 0; r < rows; r++) {
      let amax = 0;
      for (let c = c0; c < c1; c++) amax = Math.max(amax, Math.abs(Math.fround(w[r * cols + c]!)));
      scales[r * groups + g] = scaledMinifloatScale(amax, element, scaleDtype);
    }
  };
  return {
    groupSize,
    init(w) {
      if (perTensor) {
        let amax = 0;
        for (const v of w) amax = Math.max(amax, Math.abs(Math.fround(v)));
        tensorScale = scaledMinifloatScale(amax, element, "f32");
        scales.fill(tensorScale);
      } else if (groupSize === cols) {
        fitRows(w, 0, cols);
      }
    },
    fit: fitRows,
    round(r, c, w) {
      const scale = scales[r * groups + Math.floor(c / groupSize)]!;
      const code = element.encode(Math.fround(Math.fround(w) / scale), SATURATE);
      codes[r * cols + c] = code;
      return Math.fround(table[code]! * scale);
    },
    build() {
      const scaleBytes = perTensor ? 0 : SCALE_DTYPE_BITS[scaleDtype] / 8;
      const rowBytes = codec.rowBytes(cols);
      const data = new Uint8Array(rows * rowBytes);
      for (let r = 0; r < rows; r++) {
        const out = data.subarray(r * rowBytes, (r + 1) * rowBytes);
        if (!perTensor) {
          for (let g = 0; g < groups; g++) {
            writeScale(out, g * scaleBytes, scales[r * groups + g]!, scaleDtype);
          }
        }
        const packed = packCodes(codes.subarray(r * cols, (r + 1) * cols), element.bits);
        out.set(packed, rowBytes - packed.length);
      }
      return { kind: "coded", codec: codec.name, rows, cols, rowBytes, data, tensorScale };
    },
  };
}

/** Scaled minifloats (`fp8`, `fp8_e5m2`, `fp6_e2m3`, `fp6_e3m2`, `fp4` in suites). */
export const SCALED_MINIFLOAT_FORMAT: WeightFormat = {
  name: "scaled_minifloat",
  description: "FP8/FP6/FP4 elements + a float scale per channel, group or tensor",
  owns: (codec) => CODEC_NAME.test(codec),
  decodeRow: codecDecodeRow,
  bits: codecBits,
  gpu: (m) => scaledGpu(asCoded("scaled_minifloat", m)),
  grid(element, settings, rows, cols) {
    const codec = element.kind === "coded" ? element.rowCodec(settings) : undefined;
    const scaled = SCALED_ELEMENTS.find((e) => codec?.name.startsWith(`${e.name}-`));
    if (!codec || !scaled) {
      throw new WrongFormatError(`Format "scaled_minifloat" has no grid for "${element.name}"`);
    }
    const dtype = settings.options.scale_dtype;
    const scaleDtype: ScaleDtype = dtype === "f16" || dtype === "bf16" ? dtype : "f32";
    return scaledGrid(codec, scaled, settings.group, scaleDtype, rows, cols);
  },
};
