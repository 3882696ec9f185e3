/**
 * A weight format's rounding with its scales fixed explicitly, group by group, and each weight
 * rounded on its own — the quantizer GPTQ needs: it fixes a group's parameters when it reaches
 * the group, then rounds column after column as earlier errors update the weights.
 *
 * Formats whose rounding splits this way ({@linkcode gridUnsupported} lists them):
 *
 * - integer (`int.ts`): scale and zero point per channel, group or tensor (`groupParams`, the
 *   GPTQ reference quantizer's convention, scales rounded to `scale_dtype`);
 * - scaled minifloats (`fp8`, `fp8_e5m2`, `fp6_*`, `fp4`): a float scale `amax / elem_max` per
 *   channel, group or tensor;
 * - OCP MX (`mxfp4`, `mxfp6*`, `mxfp8*`, `mxint8`): an E8M0 exponent per block of 32;
 * - NVFP4: an E4M3 scale per block of 16 under an f32 tensor scale fixed from the whole matrix.
 *
 * Per-channel and per-tensor parameters (and NVFP4's tensor scale) come from the matrix as it is
 * at {@linkcode GroupGrid.init}; group parameters from {@linkcode GroupGrid.fit}. Each rounding
 * records its code; {@linkcode GroupGrid.build} stores the last code of every weight with the
 * fixed parameters, byte for byte as the format's own encoder lays a matrix out, so decoding the
 * result gives exactly the values {@linkcode GroupGrid.round} returned.
 *
 * @module
 */
import type { QuantizedMatrix, ScaleDtype } from "../../core/model.ts";
import type { Matrix } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { elementFormats, FormatSettingsError } from "../../kernels/formats/registry.ts";
import type { RowCodec } from "../../core/coded.ts";
import { groupParams, PER_TENSOR, roundHalfEven } from "../../kernels/formats/int.ts";
import { FP4_E2M1, FP8_E4M3, type Minifloat } from "../../kernels/formats/minifloat.ts";
import {
  E8M0_BIAS,
  MX_BLOCK_SIZE,
  MX_FORMATS,
  type MxFormat,
  packCodes,
} from "../../kernels/formats/mx.ts";
import { floorLog2 } from "../../kernels/formats/minifloat.ts";
import { NVFP4_BLOCK_SIZE, nvfp4GlobalScale } from "../../kernels/formats/nvfp4.ts";
import { SCALED_ELEMENTS, scaledMinifloatScale } from "../../kernels/formats/scaled_minifloat.ts";
import { SCALE_DTYPE_BITS, writeScale } from "../../kernels/formats/scale_dtype.ts";

/** A format's rounding with explicit per-group parameters (see the module notes). */
export interface GroupGrid {
  /** Columns per group; the number of columns when one set of parameters spans a row. */
  readonly groupSize: number;
  /** Fixes the per-channel, per-tensor and tensor-level parameters from `w` (`rows × cols`). */
  init(w: Float64Array): void;
  /** Fixes every row's parameters of the group of columns `[c0, c1)` from `w`. */
  fit(w: Float64Array, c0: number, c1: number): void;
  /** `w` rounded on row `r`'s grid at column `c`; records the code. */
  round(r: number, c: number, w: number): number;
  /** The stored matrix of the recorded codes. */
  build(): Matrix;
}

const SATURATE = { saturate: true } as const;

type Kind =
  | { kind: "int"; bits: number; scaleDtype: ScaleDtype }
  | { kind: "scaled"; codec: RowCodec; element: Minifloat; scaleDtype: ScaleDtype }
  | { kind: "mx"; codec: RowCodec; mx: MxFormat }
  | { kind: "nvfp4"; codec: RowCodec };

function kindOf(format: FormatSpec): Kind | string {
  const element = elementFormats.get(format.weights);
  if (element.kind === "float") return `format "${format.id}" is not quantized`;
  const reason = element.unsupported(format);
  if (reason !== undefined) return reason;
  if (element.kind === "int") {
    const { bits, scaleDtype = "f16" } = element.intConfig(format);
    return { kind: "int", bits, scaleDtype };
  }
  const codec = element.rowCodec(format);
  const scaled = SCALED_ELEMENTS.find((e) => codec.name.startsWith(`${e.name}-`));
  if (scaled) {
    const dtype = format.options.scale_dtype;
    const scaleDtype: ScaleDtype = dtype === "f16" || dtype === "bf16" ? dtype : "f32";
    return { kind: "scaled", codec, element: scaled, scaleDtype };
  }
  const mx = MX_FORMATS.find((f) => f.name === codec.name);
  if (mx) return { kind: "mx", codec, mx };
  if (codec.name === "nvfp4") return { kind: "nvfp4", codec };
  return `format "${format.id}" (${format.weights}) does not round weight by weight under ` +
    `group scales; column-wise methods take int, scaled FP8/FP6/FP4, MX and NVFP4 formats`;
}

/** Why `format` has no {@linkcode GroupGrid}, or undefined when it has one. */
export function gridUnsupported(format: FormatSpec): string | undefined {
  const kind = kindOf(format);
  return typeof kind === "string" ? kind : undefined;
}

/** The grid of `format` for a `rows × cols` matrix; throws {@linkcode FormatSettingsError}. */
export function groupGrid(format: FormatSpec, rows: number, cols: number): GroupGrid {
  const kind = kindOf(format);
  if (typeof kind === "string") throw new FormatSettingsError(kind);
  switch (kind.kind) {
    case "int":
      return intGrid(kind.bits, format.group, format.symmetric, kind.scaleDtype, rows, cols);
    case "scaled":
      return scaledGrid(kind.codec, kind.element, format.group, kind.scaleDtype, rows, cols);
    case "mx":
      return mxGrid(kind.codec, kind.mx, rows, cols);
    case "nvfp4":
      return nvfp4Grid(kind.codec, rows, cols);
  }
}

/** Columns per group for a suite `group` (0 per channel, -1 per tensor). */
function groupColumns(group: number, cols: number): number {
  return group > 0 ? Math.min(group, cols) : cols;
}

function intGrid(
  bits: number,
  group: number,
  symmetric: boolean,
  scaleDtype: ScaleDtype,
  rows: number,
  cols: number,
): GroupGrid {
  const perTensor = group === PER_TENSOR;
  const groupSize = groupColumns(group, cols);
  const groups = Math.ceil(cols / groupSize);
  const scales = new Float32Array(rows * groups);
  const zeros = new Uint8Array(rows * groups);
  const codes = new Uint8Array(rows * cols);
  const maxq = (1 << bits) - 1;
  const fitRows = (w: Float64Array, c0: number, c1: number) => {
    const g = Math.floor(c0 / groupSize);
    const row = new Float32Array(c1 - c0);
    for (let r = 0; r < rows; r++) {
      for (let c = c0; c < c1; c++) row[c - c0] = w[r * cols + c]!;
      const p = groupParams(row, 0, row.length, bits, symmetric, 1, scaleDtype);
      scales[r * groups + g] = p.scale;
      zeros[r * groups + g] = p.zero;
    }
  };
  return {
    groupSize,
    init(w) {
      if (perTensor) {
        const p = groupParams(Float32Array.from(w), 0, w.length, bits, symmetric, 1, scaleDtype);
        scales.fill(p.scale);
        zeros.fill(p.zero);
      } else if (groupSize === cols) {
        fitRows(w, 0, cols);
      }
    },
    fit: fitRows,
    round(r, c, w) {
      const i = r * groups + Math.floor(c / groupSize);
      const scale = scales[i]!;
      const zero = zeros[i]!;
      const q = Math.min(maxq, Math.max(0, roundHalfEven(w / scale) + zero));
      codes[r * cols + c] = q;
      return scale * (q - zero);
    },
    build(): QuantizedMatrix {
      return {
        kind: "int",
        rows,
        cols,
        bits,
        groupSize,
        symmetric,
        codes,
        scales,
        zeros: symmetric ? null : zeros,
        scaleDtype,
        perTensor,
      };
    },
  };
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

const E2M1_MAX = 6;
const E4M3_MAX = 448;
/** As `nvfp4.ts`: the Python scalar 1/6 against a float32 tensor, rounded to float32. */
const RECIPROCAL_E2M1_MAX = Math.fround(1 / E2M1_MAX);

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
