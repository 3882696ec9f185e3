/**
 * The `scaled_minifloat` format module: FP8/FP6/FP4 elements with a float scale (`amax /
 * elem_max`) per channel, group or tensor (`scaled_minifloat.ts`; codecs `fp8_e4m3-ch-f32`,
 * `fp4_e2m1-g64-bf16`, `fp8_e4m3-pt`, …). Its grid fixes each group's scale from the group's
 * absolute maximum, as the encoder does. Codecs are made from their names on first use, so a
 * matrix of any group and scale type decodes.
 *
 * @module
 */
import type { CodedMatrix, RowCodec } from "../../core/coded.ts";
import type { ScaleDtype } from "../../core/model.ts";
import {
  badScaleDtype,
  type CodedElementFormat,
  codedFormat,
  type FormatSettings,
  scaleDtypeOf,
} from "./element_format.ts";
import {
  asCoded,
  type CodecBound,
  codecRows,
  type GroupGrid,
  type WeightFormat,
  WrongFormatError,
} from "./format.ts";
import { type ElementKind, type GpuPlan, scalesThenCodes } from "./gpu_layout.ts";
import { groupColumns } from "./int_format.ts";
import { FP4_E2M1, FP6_E2M3, FP6_E3M2, FP8_E4M3, FP8_E5M2, type Minifloat } from "./minifloat.ts";
import { packCodes } from "./mx.ts";
import {
  PER_CHANNEL,
  PER_TENSOR,
  SCALED_ELEMENTS,
  scaledMinifloatCodec,
  type ScaledMinifloatConfig,
  scaledMinifloatName,
  scaledMinifloatScale,
} from "./scaled_minifloat.ts";
import { SCALE_DTYPE_BITS, writeScale } from "./scale_dtype.ts";

const SATURATE = { saturate: true } as const;

/** The codec names of scaled minifloats (`scaledMinifloatName`). */
const CODEC_NAME = /^(fp\d_e\dm\d)-(ch|pt|g(\d+))(?:-(f16|bf16|f32))?$/;

/** Per-channel (f32 scales) and per-tensor codecs of every element, listed in `rowCodecs`. */
const LISTED: readonly RowCodec[] = SCALED_ELEMENTS.flatMap((element) =>
  [PER_CHANNEL, PER_TENSOR].map((group) =>
    scaledMinifloatCodec({ element, group, scaleDtype: "f32" })
  )
);

/** Codecs by name: the listed ones, and those made from settings or names since. */
const codecs = new Map<string, RowCodec>(LISTED.map((codec) => [codec.name, codec]));

/** The codec of `config`, made on first use. */
function codecFor(config: ScaledMinifloatConfig): RowCodec {
  let codec = codecs.get(scaledMinifloatName(config));
  if (codec === undefined) {
    codec = scaledMinifloatCodec(config);
    codecs.set(codec.name, codec);
  }
  return codec;
}

/** The configuration a codec name spells, or undefined when it spells none. */
function configOf(name: string): ScaledMinifloatConfig | undefined {
  const [, elementName, kind, size, dtype] = CODEC_NAME.exec(name) ?? [];
  const element = SCALED_ELEMENTS.find((e) => e.name === elementName);
  if (element === undefined) return undefined;
  if (kind === "pt") {
    return dtype === undefined ? { element, group: PER_TENSOR, scaleDtype: "f32" } : undefined;
  }
  const group = kind === "ch" ? PER_CHANNEL : Number(size);
  if (dtype === undefined || (kind !== "ch" && !(group > 0))) return undefined;
  return { element, group, scaleDtype: dtype as ScaleDtype };
}

/** The codec named `name`. */
function codecNamed(name: string): RowCodec {
  const config = configOf(name);
  if (config === undefined) {
    throw new WrongFormatError(`Format "scaled_minifloat" has no codec "${name}"`);
  }
  return codecFor(config);
}

/** FP8/FP6/FP4 elements with a float scale per channel, group or tensor (amax / elem_max). */
function scaledElement(name: string, element: Minifloat, description: string): CodedElementFormat {
  const config = (settings: FormatSettings) => ({
    element,
    group: settings.group,
    scaleDtype: settings.group === PER_TENSOR ? "f32" as const : scaleDtypeOf(settings, "f32"),
  });
  return codedFormat({
    name,
    codec: `${element.name}-{ch|g<group>}-<scale_dtype> or ${element.name}-pt`,
    block: undefined,
    bits: element.bits,
    description: `${description} + a float scale (amax / ${element.max}) per channel, group ` +
      `or tensor`,
    rowCodec: (settings) => codecFor(config(settings)),
    unsupported(settings) {
      if (!settings.symmetric) {
        return `format "${name}" scales symmetrically (no zero point); symmetric: false ` +
          `contradicts it`;
      }
      const dtype = settings.options.scale_dtype;
      if (settings.group === PER_TENSOR && dtype !== undefined && dtype !== "f32") {
        return `format "${name}" stores a per-tensor scale as f32; scale_dtype ` +
          `${JSON.stringify(dtype)} contradicts it`;
      }
      return badScaleDtype(settings);
    },
  }, (settings) => settings.group === PER_TENSOR);
}

/**
 * Bounds of an element's codecs: amax maps to elem_max; half an ulp of the top binade over
 * elem_max (`rel`), plus the rounding of an f16/bf16 scale.
 */
function scaledBounds(element: Minifloat, rel: number): CodecBound[] {
  const bound = (scope: "row" | "group" | "tensor") => ({ rel: rel + 2 ** -8, scope });
  return [
    { pattern: new RegExp(`^${element.name}-ch-`), bound: bound("row") },
    { pattern: new RegExp(`^${element.name}-g\\d+-`), bound: bound("group") },
    { pattern: new RegExp(`^${element.name}-pt$`), bound: bound("tensor") },
  ];
}

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
  codecs: LISTED,
  elements: [
    scaledElement("fp8", FP8_E4M3, "FP8 E4M3 (OCP, max 448)"),
    scaledElement("fp8_e5m2", FP8_E5M2, "FP8 E5M2 (OCP, max 57344)"),
    scaledElement("fp6_e2m3", FP6_E2M3, "FP6 E2M3 (OCP MX, max 7.5)"),
    scaledElement("fp6_e3m2", FP6_E3M2, "FP6 E3M2 (OCP MX, max 28)"),
    scaledElement("fp4", FP4_E2M1, "FP4 E2M1 (OCP MX, max 6)"),
  ],
  bounds: [
    ...scaledBounds(FP8_E4M3, 16 / 448),
    ...scaledBounds(FP8_E5M2, 4096 / 57344),
    ...scaledBounds(FP6_E2M3, 0.25 / 7.5),
    ...scaledBounds(FP6_E3M2, 2 / 28),
    ...scaledBounds(FP4_E2M1, 1 / 6),
  ],
  owns: (codec) => configOf(codec) !== undefined,
  ...codecRows("scaled_minifloat", codecNamed),
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
