/**
 * The `mx` format module: OCP MX blocks (`mx.ts`): 32 elements (FP8, FP6, FP4 or INT8) under one
 * E8M0 power-of-two scale, rows stored as the block scales then the packed codes. Its grid fixes
 * each block's exponent from the block's absolute maximum, as the encoder does.
 *
 * @module
 */
import type { RowCodec } from "../../core/coded.ts";
import {
  asCoded,
  codecBits,
  codecDecodeRow,
  type GroupGrid,
  type WeightFormat,
  WrongFormatError,
} from "./format.ts";
import { type ElementKind, type GpuPlan, scalesThenCodes } from "./gpu_layout.ts";
import { floorLog2 } from "./minifloat.ts";
import { E8M0_BIAS, MX_BLOCK_SIZE, MX_FORMATS, type MxFormat, packCodes } from "./mx.ts";
import type { CodedMatrix } from "../../core/coded.ts";

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
  owns: (codec) => MX_FORMATS.some((f) => f.name === codec),
  decodeRow: codecDecodeRow,
  bits: codecBits,
  gpu: (m) => mxGpu(asCoded("mx", m)),
  grid(element, settings, rows, cols) {
    const codec = element.kind === "coded" ? element.rowCodec(settings) : undefined;
    const mx = MX_FORMATS.find((f) => f.name === codec?.name);
    if (!codec || !mx) throw new WrongFormatError(`Format "mx" has no grid for "${element.name}"`);
    return mxGrid(codec, mx, rows, cols);
  },
};
