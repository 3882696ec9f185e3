/**
 * AWQ (Lin et al., 2024) as the reference implementation (mit-han-lab llm-awq:
 * `pre_quant.run_awq`, `auto_scale.auto_scale_block`, `auto_clip.auto_clip_block`) runs it on a
 * Llama block, with the suite's format as the quantizer:
 *
 * 1. The block's linear inputs are captured on the calibration windows; the block is the float
 *    one and its float output is the next block's input (the reference computes `inps` before it
 *    scales or quantizes anything).
 * 2. Scale search, per group of linears sharing an input: `s = mean|x|^α` (clamped at 1e-4,
 *    divided by `sqrt(max s · min s)`) for α = 0, 1/20, …, 19/20 (`n_grid`); the linears become
 *    `Q(W·diag(s))·diag(s)⁻¹` and the α with the least mean squared error of the inspected module's
 *    output wins: `[wq, wk, wv]` inspected through the whole attention (with `wo` in float),
 *    `[wo]` alone (only when `wv` and `wo` have the same shape — not with grouped-query
 *    attention, as in the reference), `[w1, w3]` through the whole MLP, `[w2]` alone. Every search
 *    uses the original weights; then all scales are applied: `1/s` folded into the preceding
 *    RMSNorm (`attnNorm`, `ffnNorm`) or linear (`wv`'s rows for `wo`, `w3`'s rows for `w2`), `s`
 *    into the linears' columns, and the captured inputs divided by `s`.
 * 3. Clipping search (`mse_range`), for every linear but `wq` and `wk`: per row and group,
 *    `max = amax · (1 − i/20)` for i < `max_shrink`·20; the weights clamped to ±max are quantized
 *    and the group's output on every (N // `n_sample_token`)-th captured token compared with the
 *    unclamped float output; the least mean squared error wins and the weights are clamped to it.
 * 4. The scaled, clipped weights are rounded to the format (its RTN).
 *
 * The quantizer inside both searches is the format's own rounding (for `int` formats the GPTQ
 * convention of `int.ts`: a range that includes zero and f16 scales — llm-awq's own asymmetric
 * quantizer takes the bare min and max); groups are the format's group or block, a row when it
 * has none.
 *
 * @module
 */
import type { Method, MethodContext } from "./method.ts";
import type { DenseMatrix, LayerWeights, LlamaModel, Matrix } from "../models/model.ts";
import { dense, LINEAR_NAMES } from "../models/model.ts";
import type { FormatSpec } from "../suite/types.ts";
import { elementFormats, FormatSettingsError } from "../../kernels/formats/registry.ts";
import { decodeRow } from "../../kernels/formats/matrix.ts";
import {
  added,
  BlockPieces,
  calibrationWindows,
  embed,
  linear,
  matrixBuffers,
  MemoryMeter,
  resolveCalibration,
} from "./calibration.ts";
import { withRuntime } from "./runtime.ts";

/** Options and their defaults: llm-awq's (`run_awq`, `entry.py`, `auto_clip_layer`). */
export const AWQ_OPTIONS = {
  calibration: { dataset: "", samples: 128, seq_len: 512 },
  n_grid: 20,
  auto_scale: true,
  mse_range: true,
  max_shrink: 0.5,
  n_sample_token: 512,
};

/** Why AWQ cannot produce `format`, or undefined when it can. */
function unsupported(format: FormatSpec): string | undefined {
  const element = elementFormats.get(format.weights);
  if (element.kind === "float") {
    return `method "awq" quantizes; format "${format.id}" is ${format.weights}, the unquantized ` +
      `baseline (use method none)`;
  }
  return element.unsupported(format);
}

/** A float32 copy of any matrix's values (`rows × cols`). */
export function decoded(m: Matrix): Float32Array {
  if (m.kind === "dense") return m.data.slice();
  const out = new Float32Array(m.rows * m.cols);
  for (let r = 0; r < m.rows; r++) decodeRow(m, r, out.subarray(r * m.cols, (r + 1) * m.cols));
  return out;
}

/** `data` rounded to `format` and decoded (the reference's `pseudo_quantize_tensor`). */
export function fakeQuantize(
  format: FormatSpec,
  rows: number,
  cols: number,
  data: Float32Array,
): Float32Array {
  const element = elementFormats.get(format.weights);
  if (element.kind === "float") throw new FormatSettingsError(unsupported(format));
  return decoded(element.quantize(format, dense(rows, cols, data)));
}

/** Weights per clipping group: the format's group or fixed block, or the whole row. */
export function clipGroup(format: FormatSpec, cols: number): number {
  const element = elementFormats.get(format.weights);
  const block = element.kind === "coded" ? element.block : undefined;
  const group = format.group > 0 ? format.group : block !== undefined && block > 1 ? block : cols;
  return Math.min(group, cols);
}

/** The mean of |x| per input channel over the rows of every array (`get_act_scale`). */
export function meanAbs(xs: Float32Array[], cols: number): Float64Array {
  const sum = new Float64Array(cols);
  let n = 0;
  for (const x of xs) {
    for (let base = 0; base < x.length; base += cols) {
      for (let c = 0; c < cols; c++) sum[c]! += Math.abs(x[base + c]!);
      n++;
    }
  }
  return sum.map((v) => v / n);
}

/** Candidate scales for ratio α: `x^α` clamped at 1e-4, divided by `sqrt(max · min)`. */
export function ratioScales(xMean: Float64Array, ratio: number): Float32Array {
  const s = Float32Array.from(xMean, (v) => Math.max(Math.pow(v, ratio), 1e-4));
  let max = -Infinity;
  let min = Infinity;
  for (const v of s) {
    max = Math.max(max, v);
    min = Math.min(min, v);
  }
  const norm = Math.fround(Math.sqrt(Math.fround(max * min)));
  return s.map((v) => v / norm);
}

/** `W·diag(s)` for a `rows × cols` row-major `w`. */
function scaleColumns(w: Float32Array, cols: number, s: ArrayLike<number>): Float32Array {
  return w.map((v, i) => v * s[i % cols]!);
}

/** Mean squared difference over every element of two lists of arrays. */
function meanSquaredError(a: Float32Array[], b: Float32Array[]): number {
  let sum = 0;
  let n = 0;
  for (let k = 0; k < a.length; k++) {
    const x = a[k]!;
    const y = b[k]!;
    for (let i = 0; i < x.length; i++) sum += (x[i]! - y[i]!) ** 2;
    n += x.length;
  }
  return sum / n;
}

/** A group of linears sharing an input, as the scale search sees it. */
interface ScaleGroup {
  names: readonly ("wq" | "wk" | "wv" | "wo" | "w1" | "w3" | "w2")[];
  inputs: Float32Array[];
  /** Output of the inspected module with the group's linears replaced by `weights`. */
  inspect(weights: Partial<LayerWeights>): Float32Array[];
}

/**
 * The best scales of one group (`_search_module_scale`): the α whose `Q(W·s)/s` gives the least
 * mean squared error of the inspected output. Returns the scales and every α's loss.
 */
export function searchScales(
  group: ScaleGroup,
  weights: Record<string, DenseMatrix>,
  format: FormatSpec,
  nGrid: number,
): { scales: Float32Array; losses: number[] } {
  const cols = weights[group.names[0]!]!.cols;
  const xMean = meanAbs(group.inputs, cols);
  const reference = group.inspect({});
  let best: Float32Array | undefined;
  let bestLoss = Infinity;
  const losses: number[] = [];
  for (let i = 0; i < nGrid; i++) {
    const s = ratioScales(xMean, i / nGrid);
    const replaced: Record<string, DenseMatrix> = {};
    for (const name of group.names) {
      const w = weights[name]!;
      const q = fakeQuantize(format, w.rows, w.cols, scaleColumns(w.data, w.cols, s));
      replaced[name] = dense(w.rows, w.cols, q.map((v, k) => v / s[k % w.cols]!));
    }
    const loss = meanSquaredError(reference, group.inspect(replaced));
    losses.push(loss);
    if (loss < bestLoss) {
      bestLoss = loss;
      best = s;
    }
  }
  if (best === undefined) throw new RangeError(`AWQ scale search found no finite loss: ${losses}`);
  return { scales: best, losses };
}

/**
 * Clipping search of one linear (`auto_clip_layer`): per row and group the clamp `±max` with
 * the least output error on the sampled tokens; returns `w` clamped to it.
 */
export function clipWeights(
  w: DenseMatrix,
  inputs: Float32Array[],
  format: FormatSpec,
  nGrid: number,
  maxShrink: number,
  nSampleToken: number,
): Float32Array {
  const { rows, cols } = w;
  const group = clipGroup(format, cols);
  const groups = Math.ceil(cols / group);
  // Every stride-th token of all windows, as `input_feat[:, 0::n // n_sample_token]`.
  const total = inputs.reduce((n, x) => n + x.length / cols, 0);
  const stride = Math.max(1, Math.floor(total / nSampleToken));
  const tokens: Float32Array[] = [];
  let index = 0;
  for (const x of inputs) {
    for (let t = 0; t < x.length / cols; t++, index++) {
      if (index % stride === 0) tokens.push(x.subarray(t * cols, (t + 1) * cols));
    }
  }
  const groupOut = (data: Float32Array, r: number, g: number, out: Float64Array) => {
    const c0 = g * group;
    const c1 = Math.min(cols, c0 + group);
    tokens.forEach((x, t) => {
      let s = 0;
      for (let c = c0; c < c1; c++) s += x[c]! * data[r * cols + c]!;
      out[t] = s;
    });
  };
  const amax = new Float64Array(rows * groups);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = r * groups + Math.floor(c / group);
      amax[i] = Math.max(amax[i]!, Math.abs(w.data[r * cols + c]!));
    }
  }
  const reference = Array.from({ length: rows * groups }, (_, i) => {
    const out = new Float64Array(tokens.length);
    groupOut(w.data, Math.floor(i / groups), i % groups, out);
    return out;
  });
  const best = Float64Array.from(amax);
  const minErr = new Float64Array(rows * groups).fill(1e9);
  const out = new Float64Array(tokens.length);
  for (let step = 0; step < Math.floor(maxShrink * nGrid); step++) {
    const factor = 1 - step / nGrid;
    const clamped = w.data.map((v, k) => {
      const m = amax[Math.floor(k / cols) * groups + Math.floor((k % cols) / group)]! * factor;
      return Math.min(m, Math.max(-m, v));
    });
    const q = fakeQuantize(format, rows, cols, clamped);
    for (let i = 0; i < rows * groups; i++) {
      groupOut(q, Math.floor(i / groups), i % groups, out);
      const ref = reference[i]!;
      let err = 0;
      for (let t = 0; t < tokens.length; t++) err += (out[t]! - ref[t]!) ** 2;
      err /= tokens.length;
      if (err < minErr[i]!) {
        minErr[i] = err;
        best[i] = amax[i]! * factor;
      }
    }
  }
  return w.data.map((v, k) => {
    const m = best[Math.floor(k / cols) * groups + Math.floor((k % cols) / group)]!;
    return Math.min(m, Math.max(-m, v));
  });
}

/** Divides every row of every array by `s` elementwise (the captured inputs after scaling). */
function divideInputs(xs: Float32Array[], s: Float32Array): void {
  for (const x of xs) for (let i = 0; i < x.length; i++) x[i]! /= s[i % s.length]!;
}

/** AWQ over a whole model (see the module notes). */
async function quantizeModel(
  model: LlamaModel,
  format: FormatSpec,
  options: Record<string, unknown>,
  ctx: MethodContext,
): Promise<LlamaModel> {
  const element = elementFormats.get(format.weights);
  const reason = unsupported(format);
  if (reason !== undefined || element.kind === "float") throw new FormatSettingsError(reason);
  const o = { ...AWQ_OPTIONS, ...options };
  const nGrid = Number(o.n_grid);
  const calibration = resolveCalibration("awq", o.calibration, ctx, model.config.maxSeqLen);
  const windows = await calibrationWindows(model, calibration, ctx.seed);
  const meter = new MemoryMeter();
  let hidden = embed(model, windows);
  meter.hold(hidden);
  const pieces = new BlockPieces(model.config);
  const layers: LayerWeights[] = [];
  for (const original of model.weights.layers) {
    // Float copies of the linears: scaling and clipping work on them.
    const w = Object.fromEntries(
      LINEAR_NAMES.map((n) => [n, dense(original[n].rows, original[n].cols, decoded(original[n]))]),
    ) as Record<(typeof LINEAR_NAMES)[number], DenseMatrix>;
    const floatLayer: LayerWeights = { ...original, ...w };
    const attnIn = hidden.map((x) => pieces.attnInput(floatLayer, x));
    const att = attnIn.map((xb) => pieces.attention(floatLayer, xb));
    const h = hidden.map((x, i) => added(x, pieces.attnOutput(floatLayer, att[i]!)));
    const ffnIn = h.map((x) => pieces.ffnInput(floatLayer, x));
    const mid = ffnIn.map((fb) => pieces.mlpMid(floatLayer, fb));
    const held = meter.hold(attnIn, att, h, ffnIn, mid);
    const next = h.map((x, i) => added(x, linear(floatLayer.w2, mid[i]!)));
    meter.hold(next);
    const attnNorm = original.attnNorm.slice();
    const ffnNorm = original.ffnNorm.slice();
    if (o.auto_scale !== false) {
      const groups: { group: ScaleGroup; apply(s: Float32Array): void }[] = [{
        group: {
          names: ["wq", "wk", "wv"],
          inputs: attnIn,
          inspect: (r) =>
            attnIn.map((xb) =>
              pieces.attnOutput(floatLayer, pieces.attention({ ...floatLayer, ...r }, xb))
            ),
        },
        apply(s) {
          for (let i = 0; i < s.length; i++) attnNorm[i]! /= s[i]!;
          for (const n of ["wq", "wk", "wv"] as const) w[n] = scaleCols(w[n], s);
          divideInputs(attnIn, s);
        },
      }];
      if (w.wv.rows === w.wo.rows && w.wv.cols === w.wo.cols) {
        groups.push({
          group: {
            names: ["wo"],
            inputs: att,
            inspect: (r) => att.map((x) => linear(r.wo ?? floatLayer.wo, x)),
          },
          apply(s) {
            w.wv = scaleRows(w.wv, s);
            w.wo = scaleCols(w.wo, s);
            divideInputs(att, s);
          },
        });
      }
      groups.push({
        group: {
          names: ["w1", "w3"],
          inputs: ffnIn,
          inspect: (r) =>
            ffnIn.map((fb) => linear(floatLayer.w2, pieces.mlpMid({ ...floatLayer, ...r }, fb))),
        },
        apply(s) {
          for (let i = 0; i < s.length; i++) ffnNorm[i]! /= s[i]!;
          w.w1 = scaleCols(w.w1, s);
          w.w3 = scaleCols(w.w3, s);
          divideInputs(ffnIn, s);
        },
      }, {
        group: {
          names: ["w2"],
          inputs: mid,
          inspect: (r) => mid.map((x) => linear(r.w2 ?? floatLayer.w2, x)),
        },
        apply(s) {
          w.w3 = scaleRows(w.w3, s);
          w.w2 = scaleCols(w.w2, s);
          divideInputs(mid, s);
        },
      });
      // All searches see the original weights (auto_scale_block), then all scales apply.
      const found = groups.map(({ group }) => searchScales(group, w, format, nGrid).scales);
      groups.forEach(({ apply }, i) => apply(found[i]!));
    }
    if (o.mse_range !== false) {
      const inputsOf = { wv: attnIn, wo: att, w1: ffnIn, w3: ffnIn, w2: mid };
      for (const [name, inputs] of Object.entries(inputsOf)) {
        const m = w[name as keyof typeof inputsOf];
        const clipped = clipWeights(
          m,
          inputs,
          format,
          nGrid,
          Number(o.max_shrink),
          Number(o.n_sample_token),
        );
        w[name as keyof typeof inputsOf] = dense(m.rows, m.cols, clipped);
      }
    }
    const layer: LayerWeights = { ...original, attnNorm, ffnNorm };
    for (const name of LINEAR_NAMES) {
      layer[name] = element.quantize(format, w[name]);
      meter.hold(matrixBuffers(layer[name]));
    }
    meter.release(held);
    meter.release(hidden.reduce((n, x) => n + x.byteLength, 0));
    hidden = next;
    layers.push(layer);
    await Promise.resolve();
  }
  ctx.record?.({ quantize_peak_bytes: meter.peak });
  return withRuntime({ ...model, weights: { ...model.weights, layers } }, format);
}

/** `W·diag(s)` of a dense matrix. */
function scaleCols(m: DenseMatrix, s: Float32Array): DenseMatrix {
  return dense(m.rows, m.cols, scaleColumns(m.data, m.cols, s));
}

/** `diag(s)⁻¹·W`: the last `s.length` rows divided by `s` (`scale_fc_fc`). */
function scaleRows(m: DenseMatrix, s: Float32Array): DenseMatrix {
  const first = m.rows - s.length;
  return dense(
    m.rows,
    m.cols,
    m.data.map((v, k) => {
      const r = Math.floor(k / m.cols);
      return r < first ? v : v / s[r - first]!;
    }),
  );
}

/** AWQ: activation-aware per-channel scaling and clipping, then the format's rounding. */
export const awq: Method = {
  name: "awq",
  description: "AWQ (activation-aware scale and clip search) into any quantized format",
  options: AWQ_OPTIONS,
  unsupported,
  quantize: quantizeModel,
};
