/**
 * HQQ, half-quadratic quantization (Badri & Shaji, 2023), as the `hqq` library quantizes a weight
 * (`Quantizer.quantize` with `BaseQuantizeConfig`'s defaults: `axis=1`, `optimize=True`,
 * `round_zero` for 4 bits; `optimize_weights_proximal_legacy`), calibration-free:
 *
 * - per group of `group` input columns (a row when 0), `inverseScale = (2^b − 1)/(max − min)`
 *   clamped at 2·10⁴, `zero = −min · inverseScale` (rounded for 4 bits);
 * - then up to `iters` proximal steps on the zero points with the scales fixed:
 *   `W_q = clamp(round(W·inverseScale + zero))`, `W_r = (W_q − zero)/inverseScale`,
 *   `W_e = shrink_p(W − W_r, β)` (`sign(x)·relu(|x| − |x|^(p−1)/β)`, p = `lp_norm`),
 *   `zero = mean_group(W_q − (W − W_e)·inverseScale)`, `β ·= κ`; with `early_stop` the loop ends
 *   at the first step whose error `mean|W − W_r|` (over the whole matrix) does not improve, after
 *   that step's zero update, as in the library;
 * - codes `round(W·inverseScale + zero)`, stored with `scale = 1/inverseScale` and `zero` in f16
 *   (`kernels/formats/affine_codec.ts`: zero points stay fractional, so the format is HQQ's own,
 *   `hqq-int<b>-g<group>`, and counts 32 bits of scale and zero per group).
 *
 * The suite format must be an integer format with `symmetric: false` (HQQ fits a zero point);
 * the library's default group is 64 (`{ weights: int4, group: 64, symmetric: false }`).
 *
 * @module
 */
import type { Method, MethodContext } from "./method.ts";
import type { LinearName, LlamaModel, Matrix } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { elementFormats, FormatSettingsError } from "../../kernels/formats/registry.ts";
import { affineCodec, type AffineGroup, hqqInitial } from "../../kernels/formats/affine_codec.ts";
import { ensureRowCodec } from "../../kernels/formats/codecs.ts";
import { roundHalfEven } from "../../kernels/formats/int.ts";
import { decoded } from "./awq.ts";
import { matrixBuffers, MemoryMeter } from "./calibration.ts";
import { withRuntime } from "./runtime.ts";
import { quantizeLayers } from "./sequential.ts";

/** Options and their defaults: the library's (`optimize_weights_proximal_legacy`). */
export const HQQ_OPTIONS = {
  optimize: true,
  lp_norm: 0.7,
  beta: 10,
  kappa: 1.01,
  iters: 20,
  early_stop: true,
};

/** Proximal-step settings. */
export interface HqqSettings {
  lpNorm: number;
  beta: number;
  kappa: number;
  iters: number;
  earlyStop: boolean;
}

/** Why HQQ cannot produce `format`, or undefined when it can. */
function unsupported(format: FormatSpec): string | undefined {
  const element = elementFormats.get(format.weights);
  if (element.kind !== "int") {
    return `method "hqq" quantizes to integer formats; format "${format.id}" is ${format.weights}`;
  }
  if (format.symmetric) {
    return `method "hqq" fits a zero point per group; format "${format.id}" is symmetric (use ` +
      `symmetric: false)`;
  }
  if (format.group < 0) return `method "hqq" works per group or channel, not per tensor`;
  return element.unsupported(format);
}

/** The shrinkage operator of the lp norm (`shrink_lp_op`). */
function shrink(x: number, beta: number, p: number): number {
  const a = Math.abs(x);
  return Math.sign(x) * Math.max(0, a - Math.pow(a, p - 1) / beta);
}

/**
 * HQQ of a `rows × cols` matrix into `bits`-bit codes in groups of `group` columns (0: a row):
 * codes and each group's parameters, row-major by group.
 */
export function hqqQuantize(
  w: Float32Array,
  rows: number,
  cols: number,
  bits: number,
  group: number,
  settings: HqqSettings | undefined,
): { codes: Uint8Array; groups: AffineGroup[] } {
  const size = group > 0 ? Math.min(group, cols) : cols;
  const perRow = Math.ceil(cols / size);
  const maxq = (1 << bits) - 1;
  const n = rows * perRow;
  const inverse = new Float64Array(n);
  const zero = new Float64Array(n);
  const range = (i: number) => {
    const base = Math.floor(i / perRow) * cols;
    const c0 = (i % perRow) * size;
    return [base + c0, base + Math.min(cols, c0 + size)] as const;
  };
  for (let i = 0; i < n; i++) {
    const [a, b] = range(i);
    const init = hqqInitial(w, a, b, bits);
    inverse[i] = init.inverseScale;
    zero[i] = init.zero;
  }
  const q = (v: number, i: number) =>
    Math.min(maxq, Math.max(0, roundHalfEven(v * inverse[i]! + zero[i]!)));
  if (settings) {
    let beta = settings.beta;
    let best = 1e4;
    for (let iter = 0; iter < settings.iters; iter++) {
      let errorSum = 0;
      for (let i = 0; i < n; i++) {
        const [a, b] = range(i);
        let sum = 0;
        for (let k = a; k < b; k++) {
          const wq = q(w[k]!, i);
          const wr = (wq - zero[i]!) / inverse[i]!;
          errorSum += Math.abs(w[k]! - wr);
          const we = shrink(w[k]! - wr, beta, settings.lpNorm);
          sum += wq - (w[k]! - we) * inverse[i]!;
        }
        zero[i] = sum / (b - a);
      }
      beta *= settings.kappa;
      const error = errorSum / w.length;
      if (settings.earlyStop) {
        if (error < best) best = error;
        else break;
      }
    }
  }
  const codes = new Uint8Array(rows * cols);
  const groups: AffineGroup[] = [];
  for (let i = 0; i < n; i++) {
    const [a, b] = range(i);
    for (let k = a; k < b; k++) codes[k] = q(w[k]!, i);
    groups.push({ scale: 1 / inverse[i]!, zero: zero[i]! });
  }
  return { codes, groups };
}

/** HQQ over every transformer linear (see the module notes). */
async function quantizeModel(
  model: LlamaModel,
  format: FormatSpec,
  options: Record<string, unknown>,
  ctx: MethodContext,
): Promise<LlamaModel> {
  const reason = unsupported(format);
  if (reason !== undefined) throw new FormatSettingsError(reason);
  const o = { ...HQQ_OPTIONS, ...options };
  const settings = o.optimize === false ? undefined : {
    lpNorm: Number(o.lp_norm),
    beta: Number(o.beta),
    kappa: Number(o.kappa),
    iters: Number(o.iters),
    earlyStop: o.early_stop !== false,
  };
  const bits = elementFormats.get(format.weights).bits;
  const meter = new MemoryMeter();
  // Calibration-free: the driver hands every group of every layer over, with no inputs.
  const layers = await quantizeLayers(
    model,
    {
      kind: "groups",
      sequential: false,
      quantizeGroup({ names }, _inputs, { original }) {
        const out: Partial<Record<LinearName, Matrix>> = {};
        for (const name of names) {
          const m = original[name];
          const group = format.group > 0 ? Math.min(format.group, m.cols) : 0;
          const codec = ensureRowCodec(affineCodec(bits, group)) as ReturnType<typeof affineCodec>;
          const { codes, groups } = hqqQuantize(decoded(m), m.rows, m.cols, bits, group, settings);
          const rowBytes = codec.rowBytes(m.cols);
          const data = new Uint8Array(m.rows * rowBytes);
          const perRow = groups.length / m.rows;
          for (let r = 0; r < m.rows; r++) {
            codec.encodeCodes(
              codes.subarray(r * m.cols, (r + 1) * m.cols),
              groups.slice(r * perRow, (r + 1) * perRow),
              data.subarray(r * rowBytes, (r + 1) * rowBytes),
            );
          }
          const q: Matrix = {
            kind: "coded",
            codec: codec.name,
            rows: m.rows,
            cols: m.cols,
            rowBytes,
            data,
            tensorScale: 1,
          };
          meter.hold(matrixBuffers(q));
          out[name] = q;
        }
        return out;
      },
    },
    undefined,
    meter,
  );
  ctx.record?.({ quantize_peak_bytes: meter.peak });
  return withRuntime({ ...model, weights: { ...model.weights, layers } }, format);
}

/** HQQ: calibration-free half-quadratic optimisation of zero points. */
export const hqq: Method = {
  name: "hqq",
  description: "HQQ (half-quadratic zero-point optimisation, calibration-free) into int formats",
  options: HQQ_OPTIONS,
  unsupported,
  quantize: quantizeModel,
};
