/**
 * SmoothQuant (Xiao et al., 2023) as the reference implementation (mit-han-lab smoothquant:
 * `calibration.get_act_scales`, `smooth.smooth_lm` for Llama-like blocks, `fake_quant`):
 *
 * 1. Activation scales: `max|x_j|` per input channel of every linear over the calibration
 *    windows, on the float model.
 * 2. Smoothing, per block: for the attention input (`wq`, `wk`, `wv` after `attnNorm`) and the
 *    MLP input (`w1`, `w3` after `ffnNorm`), `s_j = max|X_j|^α / max|W_j|^(1−α)` (the weight
 *    maximum over all the group's linears, clamped at 1e-5; `s` clamped at 1e-5); the norm's
 *    weight is divided by `s` and the linears' columns multiplied by it. `wo` and `w2` are not
 *    smoothed (their inputs have no norm to fold into).
 * 3. The weights are rounded to the format (W8A8: `int8` per channel, as the reference's
 *    `quantize_weight_per_channel_absmax`, here with `int.ts`'s symmetric scale); the format's
 *    `activations:` (e.g. `int8`, `fp8`) makes the backend quantize every transformer linear's
 *    input per token at run time (`kernels/formats/runtime_quant.ts`).
 *
 * `device: webgpu` runs the calibration forward's linears, SwiGLU and attention on a WebGPU
 * device, all windows at once (`calibration_device.ts`); the per-channel maxima are then taken
 * here over the captures the forward brings back anyway (one pass, exact in float32, so they
 * are the maxima of what the GPU computed). The captures differ from the CPU's by the GPU
 * GEMMs' float32 rounding from the first linear on: layer 0's attention-input scales are bit
 * for bit the CPU's (embeddings through a norm), every later group's equal them up to that
 * rounding (`smoothquant_webgpu_test.ts`).
 *
 * @module
 */
import type { Method, MethodContext } from "./method.ts";
import type { DenseMatrix, LayerWeights, LinearName, LlamaModel } from "../../core/model.ts";
import { dense, LINEAR_NAMES } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { elementFormats, FormatSettingsError } from "../../kernels/formats/registry.ts";
import {
  calibrationWindows,
  matrixBuffers,
  MemoryMeter,
  resolveCalibration,
} from "./calibration.ts";
import { normCopies, quantizeLayers } from "./sequential.ts";
import { type BlockStep, type BlockValue, producerIndex } from "../../core/graph.ts";
import { decoded } from "./awq.ts";
import { withRuntime } from "./runtime.ts";
import { calibrationDevice, calibrationRun } from "./calibration_device.ts";

/** Options and their defaults: the reference's (`smooth_lm` α, `get_act_scales` 512 × 512). */
export const SMOOTHQUANT_OPTIONS = {
  calibration: { dataset: "", samples: 512, seq_len: 512 },
  alpha: 0.5,
  /** Where the calibration forward runs: `cpu` (window by window) or `webgpu`. */
  device: "cpu",
};

/** Why SmoothQuant cannot produce `format`, or undefined when it can. */
function unsupported(format: FormatSpec): string | undefined {
  const element = elementFormats.get(format.weights);
  if (element.kind === "float") {
    return `method "smoothquant" quantizes; format "${format.id}" is ${format.weights}, the ` +
      `unquantized baseline (use method none)`;
  }
  return element.unsupported(format);
}

/** Raises `max` (one entry per channel) to `|x_j|` over the rows of `x`. */
export function maxInto(max: Float32Array, x: Float32Array): void {
  const cols = max.length;
  for (let i = 0; i < x.length; i++) max[i % cols] = Math.max(max[i % cols]!, Math.abs(x[i]!));
}

/**
 * Smoothing factors of one norm's linears (`smooth_ln_fcs_llama_like`):
 * `s_j = max|X_j|^α / max(max_k |W_kj|, 1e-5)^(1−α)`, clamped at 1e-5.
 */
export function smoothingScales(
  actScales: Float32Array,
  linears: DenseMatrix[],
  alpha: number,
): Float32Array {
  const cols = actScales.length;
  const weightScales = new Float32Array(cols);
  for (const w of linears) {
    for (let i = 0; i < w.data.length; i++) {
      weightScales[i % cols] = Math.max(weightScales[i % cols]!, Math.abs(w.data[i]!));
    }
  }
  return actScales.map((a, j) =>
    Math.max(
      Math.pow(a, alpha) / Math.pow(Math.max(weightScales[j]!, 1e-5), 1 - alpha),
      1e-5,
    )
  );
}

/** SmoothQuant over a whole model (see the module notes). */
async function quantizeModel(
  model: LlamaModel,
  format: FormatSpec,
  options: Record<string, unknown>,
  ctx: MethodContext,
): Promise<LlamaModel> {
  const element = elementFormats.get(format.weights);
  const reason = unsupported(format);
  if (reason !== undefined || element.kind === "float") throw new FormatSettingsError(reason);
  const o = { ...SMOOTHQUANT_OPTIONS, ...options };
  const alpha = alphaOf(o);
  const run = await calibrationRun(
    "smoothquant",
    calibrationDevice("smoothquant", o.device),
    model.config,
  );
  const { profile } = run;
  const calibration = resolveCalibration("smoothquant", o.calibration, ctx, model.config.maxSeqLen);
  const windows = await calibrationWindows(model, calibration, ctx.seed);
  const meter = new MemoryMeter();
  const normOf = (steps: readonly BlockStep[], input: BlockValue) => {
    const producer = steps[producerIndex(steps, input)];
    return producer?.op === "rmsnorm" ? producer.weight : undefined;
  };
  const layers = await quantizeLayers(
    model,
    {
      kind: "layer",
      // Only inputs that are a norm's output can be smoothed (the norm takes 1/s).
      taps: ({ input }, { steps }) => normOf(steps, input) !== undefined,
      windows: run.windows,
      quantizeLayer(captures, { original, steps, groups, index }) {
        let t = performance.now();
        const w = Object.fromEntries(
          LINEAR_NAMES.map((
            n,
          ) => [n, dense(original[n].rows, original[n].cols, decoded(original[n]))]),
        ) as Record<LinearName, DenseMatrix>;
        const norms = normCopies(steps, original);
        for (const { names, input } of groups) {
          const norm = normOf(steps, input);
          if (norm === undefined) continue;
          const act = new Float32Array(w[names[0]!].cols);
          for (const x of captures.get(input)!) maxInto(act, x);
          const s = smoothingScales(act, names.map((n) => w[n]), alpha);
          for (let j = 0; j < s.length; j++) norms[norm][j]! /= s[j]!;
          for (const n of names) {
            w[n] = dense(w[n].rows, w[n].cols, w[n].data.map((v, k) => v * s[k % s.length]!));
          }
        }
        if (profile) t = profile.add("smooth", t);
        const layer: LayerWeights = { ...original, ...norms };
        for (const name of LINEAR_NAMES) {
          layer[name] = element.quantize(format, w[name]);
          meter.hold(matrixBuffers(layer[name]));
        }
        if (profile) {
          profile.add("quantize", t);
          profile.layer(`layer ${index}`);
        }
        return layer;
      },
    },
    windows,
    meter,
  );
  profile?.total();
  ctx.record?.({ quantize_peak_bytes: meter.peak });
  return withRuntime({ ...model, weights: { ...model.weights, layers } }, format);
}

/** SmoothQuant: migrate activation outliers into the weights, then quantize both (W8A8). */
/** The migration strength `alpha` of the options, in [0, 1]. */
function alphaOf(options: Record<string, unknown>): number {
  const alpha = Number({ ...SMOOTHQUANT_OPTIONS, ...options }.alpha);
  if (!(alpha >= 0 && alpha <= 1)) {
    throw new FormatSettingsError(`SmoothQuant alpha must be in [0, 1], got ${options.alpha}`);
  }
  return alpha;
}

export const smoothquant: Method = {
  name: "smoothquant",
  description: "SmoothQuant (activation smoothing folded into norms; W8A8 with activations:)",
  options: SMOOTHQUANT_OPTIONS,
  unsupported,
  checkOptions: (options) => {
    alphaOf(options);
    calibrationDevice("smoothquant", options.device);
  },
  quantize: quantizeModel,
};
