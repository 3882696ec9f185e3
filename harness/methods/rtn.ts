/**
 * Round-to-nearest: every linear weight of every block is quantized independently, with no
 * calibration, into any integer or coded format — for a coded format RTN is its codec's own
 * encoder (llama.cpp's reference quantizers for ggml blocks, the OCP recipe for MX, vLLM's for
 * NVFP4). The token embedding stays in float32 (it is a table lookup) and so does the classifier,
 * as weight-only PTQ methods (GPTQ, AWQ) leave `lm_head` unquantized by default. With
 * `clip: mse`, integer formats search each group's clipping range as the GPTQ reference
 * quantizer's `mse` option does ({@linkcode quantizeIntMse}).
 *
 * @module
 */
import type { QuantizedMatrix } from "../../core/model.ts";
import type { Method, MethodContext } from "./method.ts";
import type { LinearName, LlamaModel, Matrix } from "../../core/model.ts";
import { elementFormats, FormatSettingsError } from "../../kernels/formats/registry.ts";
import {
  groupParams,
  type IntQuantConfig,
  minCode,
  quantizeInt,
  roundHalfEven,
} from "../../kernels/formats/int.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { matrixBuffers, MemoryMeter } from "./calibration.ts";
import { withRuntime } from "./runtime.ts";
import { quantizeLayers } from "./sequential.ts";

/** Why `rtn` cannot produce `format`, or undefined when it can. */
function unsupported(format: FormatSpec): string | undefined {
  const element = elementFormats.get(format.weights);
  if (element.kind === "float") {
    return `method "rtn" quantizes; format "${format.id}" is ${format.weights}, the ` +
      `unquantized baseline (use method none)`;
  }
  return element.unsupported(format);
}

/** Quantizes one dense matrix into the integer or coded format of `format`. */
export function quantizeMatrix(m: Matrix, format: FormatSpec): Matrix {
  if (m.kind !== "dense") throw new Error(`Cannot re-quantize a ${m.kind} matrix`);
  const element = elementFormats.get(format.weights);
  if (element.kind === "float") throw new FormatSettingsError(unsupported(format));
  return element.quantize(format, m);
}

/** Options and their defaults; the clipping search's are the GPTQ reference `Quantizer`'s. */
export const RTN_OPTIONS = { clip: "none", grid: 100, maxshrink: 0.8, norm: 2.4 };

/** Thrown for RTN options that do not apply. */
export class RtnOptionsError extends Error {
  override name = "RtnOptionsError";
}

/** The clipping search of the GPTQ reference quantizer (`Quantizer.configure(mse=True, …)`). */
export interface MseSearch {
  /** Shrink steps `p = 1 − i/grid`, for `i < maxshrink · grid`. */
  grid: number;
  maxshrink: number;
  /** Exponent of the error `Σ |q(x) − x|^norm`. */
  norm: number;
}

/**
 * RTN of an integer format with the GPTQ reference quantizer's MSE clipping search: each group's
 * range (per channel, group or tensor) is shrunk by `p = 1, 1 − 1/grid, …` and the `p` with the
 * least `Σ |q(x) − x|^norm` (strictly less than every larger `p`) sets the group's scale and zero
 * point; scales are rounded to `scale_dtype` before the error is measured, as stored.
 */
export function quantizeIntMse(
  data: Float32Array,
  rows: number,
  cols: number,
  config: IntQuantConfig,
  search: MseSearch,
): QuantizedMatrix {
  // The layout, codes aside, is RTN's; only the parameters change.
  const q = quantizeInt(data, rows, cols, config);
  const { bits, symmetric } = config;
  const scaleDtype = q.scaleDtype ?? "f16";
  const restricted = config.restricted === true;
  const minq = minCode(restricted);
  const maxq = (1 << bits) - 1;
  const groups = Math.ceil(cols / q.groupSize);
  const steps = Math.floor(search.maxshrink * search.grid);
  const best = (start: number, end: number) => {
    let bestErr = Infinity;
    let params = groupParams(data, start, end, bits, symmetric, 1, scaleDtype, restricted);
    for (let i = 0; i < steps; i++) {
      const shrink = 1 - i / search.grid;
      const p = groupParams(data, start, end, bits, symmetric, shrink, scaleDtype, restricted);
      let err = 0;
      for (let k = start; k < end; k++) {
        const x = data[k]!;
        const code = Math.min(maxq, Math.max(minq, roundHalfEven(x / p.scale) + p.zero));
        err += Math.pow(Math.abs(p.scale * (code - p.zero) - x), search.norm);
      }
      if (err < bestErr) {
        bestErr = err;
        params = p;
      }
    }
    return params;
  };
  const apply = (params: { scale: number; zero: number }, r: number, g: number) => {
    q.scales[r * groups + g] = params.scale;
    if (q.zeros) q.zeros[r * groups + g] = params.zero;
    const end = Math.min(cols, (g + 1) * q.groupSize);
    for (let c = g * q.groupSize; c < end; c++) {
      const code = roundHalfEven(data[r * cols + c]! / params.scale) + params.zero;
      q.codes[r * cols + c] = Math.min(maxq, Math.max(minq, code));
    }
  };
  if (q.perTensor) {
    const params = best(0, rows * cols);
    for (let r = 0; r < rows; r++) apply(params, r, 0);
    return q;
  }
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const start = r * cols + g * q.groupSize;
      apply(best(start, Math.min(r * cols + cols, start + q.groupSize)), r, g);
    }
  }
  return q;
}

/** The clipping search `options` ask for, or undefined for plain RTN. */
function mseSearch(options: Record<string, unknown>, format: FormatSpec): MseSearch | undefined {
  const search = clipSearch(options);
  if (search !== undefined && elementFormats.get(format.weights).kind !== "int") {
    throw new RtnOptionsError(
      `rtn clip: mse searches integer scales; format "${format.id}" is ${format.weights}`,
    );
  }
  return search;
}

/** The clipping search the options ask for, whatever the format (undefined: plain RTN). */
function clipSearch(options: Record<string, unknown>): MseSearch | undefined {
  const o = { ...RTN_OPTIONS, ...options };
  if (o.clip === "none") return undefined;
  if (o.clip !== "mse") {
    throw new RtnOptionsError(
      `rtn option clip must be "none" or "mse", got ${JSON.stringify(o.clip)}`,
    );
  }
  const search = { grid: Number(o.grid), maxshrink: Number(o.maxshrink), norm: Number(o.norm) };
  if (!(search.grid >= 1 && search.maxshrink > 0 && search.maxshrink <= 1 && search.norm > 0)) {
    throw new RtnOptionsError(
      `rtn clipping needs grid ≥ 1, 0 < maxshrink ≤ 1 and norm > 0, got ${o.grid}, ` +
        `${o.maxshrink} and ${o.norm}`,
    );
  }
  return search;
}

/**
 * A calibration-free method's pass: every linear of every block (streamed layer by layer) becomes
 * `quantize(original, name, layer)`; the peak of the matrices held is recorded as
 * `quantize_peak_bytes` and the format's run-time quantization is attached.
 */
export function quantizeEachLinear(
  model: LlamaModel,
  format: FormatSpec,
  ctx: MethodContext,
  quantize: (original: Matrix, name: LinearName, layer: number) => Matrix,
): Promise<LlamaModel> {
  const meter = new MemoryMeter();
  // The driver hands every group of every layer over, with no inputs.
  return quantizeLayers(
    model,
    {
      kind: "groups",
      sequential: false,
      quantizeGroup({ names }, _inputs, { index, original }) {
        const out: Partial<Record<LinearName, Matrix>> = {};
        for (const name of names) {
          out[name] = quantize(original[name], name, index);
          meter.hold(matrixBuffers(out[name]));
        }
        return out;
      },
    },
    undefined,
    meter,
  ).then((layers) => {
    ctx.record?.({ quantize_peak_bytes: meter.peak });
    return withRuntime({ ...model, weights: { ...model.weights, layers } }, format);
  });
}

/** Round-to-nearest quantization of the transformer blocks' linear weights. */
export const rtn: Method = {
  name: "rtn",
  description: "round-to-nearest into any integer or coded format (optional MSE clipping search)",
  options: RTN_OPTIONS,
  unsupported,
  checkOptions: (options) => void clipSearch(options),
  quantize(model, format, options, ctx): Promise<LlamaModel> {
    // Options are checked before anything runs (a bad one throws at once).
    const search = mseSearch(options, format);
    const element = elementFormats.get(format.weights);
    return quantizeEachLinear(
      model,
      format,
      ctx,
      (m) =>
        search && element.kind === "int" && m.kind === "dense"
          ? quantizeIntMse(m.data, m.rows, m.cols, element.intConfig(format), search)
          : quantizeMatrix(m, format),
    );
  },
};
