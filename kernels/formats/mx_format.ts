/**
 * The `mx` format module: OCP MX blocks (`mx.ts`): 32 elements (FP8, FP6, FP4 or INT8) under one
 * E8M0 power-of-two scale, rows stored as the block scales then the packed codes. Its grid fixes
 * each block's exponent from the block's absolute maximum, as the encoder does.
 *
 * @module
 */
import type { RowCodec } from "../../core/coded.ts";
import { type CodedElementFormat, E8M0_SCALES, fixedFormat } from "./element_format.ts";
import {
  asCoded,
  codecRows,
  codecsByName,
  type GroupGrid,
  type WeightFormat,
  WrongFormatError,
} from "./format.ts";
import { type ElementKind, type GpuPlan, scalesThenCodes } from "./gpu_layout.ts";
import { floorLog2 } from "./minifloat.ts";
import { E8M0_BIAS, MX_BLOCK_SIZE, MX_FORMATS, type MxFormat, packCodes } from "./mx.ts";
import type { CodedMatrix } from "../../core/coded.ts";
import { mxRowCodec } from "./row_codecs.ts";

/** One row codec per OCP MX format, named as the format. */
const CODECS: readonly RowCodec[] = MX_FORMATS.map(mxRowCodec);
const codecNamed = codecsByName(CODECS);

/** The suite's name for the MX format of codec `codec`, of `element`s × 32 + an E8M0 scale. */
function mxElement(name: string, codec: string, bits: number, element: string): CodedElementFormat {
  return fixedFormat(name, codecNamed(codec), bits, `OCP MX: ${element} × 32 + an E8M0 scale`, {
    minimum: false,
    scales: E8M0_SCALES,
  });
}

const MX_ELEMENTS: Readonly<Record<string, [ElementKind, number]>> = {
  mxfp4: ["e2m1", 4],
  mxfp6_e2m3: ["e2m3", 6],
  mxfp6_e3m2: ["e3m2", 6],
  mxfp8_e4m3: ["e4m3", 8],
  mxfp8_e5m2: ["e5m2", 8],
};

function mxGpu(m: CodedMatrix): GpuPlan | string {
  const nb32 = () => Math.ceil(m.cols / 32);
  if (m.codec === "mxint8") {
    return scalesThenCodes(m, "uint", 8, "e8m0", 5, nb32, 1, 2 ** -6, 0x80);
  }
  const element = MX_ELEMENTS[m.codec];
  if (!element) return `no WGSL decoder for codec "${m.codec}"`;
  return scalesThenCodes(m, element[0], element[1], "e8m0", 5, nb32, 1, 1);
}

function mxGrid(codec: RowCodec, mx: MxFormat, rows: number, cols: number): GroupGrid {
  const { element } = mx;
  const blocks = Math.ceil(cols / MX_BLOCK_SIZE);
  const exponents = new Int32Array(rows * blocks);
  const padded = blocks * MX_BLOCK_SIZE;
  const codes = new Uint8Array(rows * padded).fill(element.encode(0));
  return {
    groupSize: MX_BLOCK_SIZE,
    init() {},
    fit(w, c0, c1) {
      const b = Math.floor(c0 / MX_BLOCK_SIZE);
      for (let r = 0; r < rows; r++) {
        let amax = 0;
        for (let c = c0; c < c1; c++) {
          amax = Math.max(amax, Math.abs(Math.fround(w[r * cols + c]!)));
        }
        exponents[r * blocks + b] = amax === 0
          ? -E8M0_BIAS
          : Math.max(floorLog2(amax) - element.emax, -E8M0_BIAS);
      }
    },
    round(r, c, w) {
      const x = exponents[r * blocks + Math.floor(c / MX_BLOCK_SIZE)]!;
      const code = element.encode(Math.fround(w) * Math.pow(2, -x));
      codes[r * padded + c] = code;
      return Math.fround(element.decode(code) * Math.pow(2, x));
    },
    build() {
      const rowBytes = codec.rowBytes(cols);
      const data = new Uint8Array(rows * rowBytes);
      for (let r = 0; r < rows; r++) {
        const out = data.subarray(r * rowBytes, (r + 1) * rowBytes);
        for (let b = 0; b < blocks; b++) out[b] = exponents[r * blocks + b]! + E8M0_BIAS;
        out.set(packCodes(codes.subarray(r * padded, (r + 1) * padded), element.bits), blocks);
      }
      return { kind: "coded", codec: codec.name, rows, cols, rowBytes, data, tensorScale: 1 };
    },
  };
}

/** OCP MX block formats (`mxfp4`, `mxfp6*`, `mxfp8*`, `mxint8` in suites). */
export const MX_FORMAT: WeightFormat = {
  name: "mx",
  description: "OCP MX: 32 FP8/FP6/FP4/INT8 elements + an E8M0 scale per block",
  codecs: CODECS,
  elements: [
    mxElement("mxfp8", "mxfp8_e4m3", 8, "FP8 E4M3"),
    mxElement("mxfp8_e5m2", "mxfp8_e5m2", 8, "FP8 E5M2"),
    mxElement("mxfp6", "mxfp6_e2m3", 6, "FP6 E2M3"),
    mxElement("mxfp6_e3m2", "mxfp6_e3m2", 6, "FP6 E3M2"),
    mxElement("mxfp4", "mxfp4", 4, "FP4 E2M1"),
    mxElement("mxint8", "mxint8", 8, "INT8 (k/64)"),
  ],
  // Floor of log2 amax: amax lands in [2^emax, 2^(emax+1)); the error is at most the clamp to
  // the element's max or half an ulp of the top binade, over amax.
  bounds: [
    { pattern: /^mxfp4$/, bound: { rel: 0.25, scope: "block" } },
    { pattern: /^mxfp6_e2m3$/, bound: { rel: 0.0625, scope: "block" } },
    { pattern: /^mxfp6_e3m2$/, bound: { rel: 0.125, scope: "block" } },
    { pattern: /^mxfp8_e4m3$/, bound: { rel: 0.125, scope: "block" } },
    { pattern: /^mxfp8_e5m2$/, bound: { rel: 0.125, scope: "block" } },
    { pattern: /^mxint8$/, bound: { rel: 1 / 128, scope: "block" } },
  ],
  owns: (codec) => MX_FORMATS.some((f) => f.name === codec),
  ...codecRows("mx", codecNamed),
  gpu: (m) => mxGpu(asCoded("mx", m)),
  grid(element, settings, rows, cols) {
    const codec = element.kind === "coded" ? element.rowCodec(settings) : undefined;
    const mx = MX_FORMATS.find((f) => f.name === codec?.name);
    if (!codec || !mx) throw new WrongFormatError(`Format "mx" has no grid for "${element.name}"`);
    return mxGrid(codec, mx, rows, cols);
  },
};
