/**
 * AffineQuant (Ma et al., ICLR 2024; bytedance/AffineQuant, built on OmniQuant): block-wise
 * training of equivalent affine transforms and learnable weight clipping, block after block.
 *
 * Per block (`quantize/affinequant.py` for Llama):
 *
 * 1. Two streams of hidden states go through the model (`sequential.ts`'s `block` kind): the
 *    quantized model's (the block's input) and the float model's (the float block's output is the
 *    target). With `aug_loss` the float block's output on the quantized stream is a second target.
 * 2. Learned: the transforms of `affine_transform.ts` — diagonal `qkv` and `fc` scales folded into
 *    the RMSNorms (initialized as SmoothQuant's `max|X_j|^α / max_k W_kj^(1−α)` with `wq`'s and
 *    `w3`'s column maxima, as the authors take `q_proj`'s and `up_proj`'s), a masked matrix per
 *    key/value head between `wv` and `wo` (initialized to the diagonal of the same rule on `wo`,
 *    the largest over the query heads of a group), a masked matrix per key/value head between
 *    `wq` and `wk` (the identity; diagonal-only unless `qk_matrix`) — and the clipping factors of
 *    every linear (`kernels/cpu/clip_quant.ts`, sigmoid-bounded, OmniQuant's LWC).
 * 3. Each epoch, every window once (batch 1): the transforms are folded into the weights, the
 *    weights fake-quantized with the straight-through estimator, the block run with the format's
 *    activation quantization (`kernels/cpu/backward.ts`, the float64 tape), the loss the mean
 *    squared error to the target(s), then one AdamW step (`let_lr` for the transforms, `lwc_lr`
 *    for the clipping, `weight_decay`). Before each step, transform entries with
 *    `0 < |v| < 1e-2` are set to `±1e-2` (the authors' `truncate_number`).
 * 4. The gradual mask: at epoch `e` of `E`, the matrices' band is
 *    `int((headDim − 1) / (E − 1) · e) + 1` (the whole matrix at the last epoch), off-diagonal
 *    entries entering times the stability factor (`stability_factor`: 0.1 with activations,
 *    1e-2 weight-only, as the authors' scripts).
 * 5. The block is stored folded: norms divided, linears transformed and rounded with the learned
 *    clipping onto the integer format (scales rounded as the format stores them), so the runtime
 *    needs nothing beyond the format; the quantized stream goes on through it on the CPU kernels
 *    with the format's run-time activation quantization.
 *
 * Defaults are the authors': 128 windows, `let_lr` 5e-3, `lwc_lr` 1e-2, weight decay 0, α 0.5,
 * and their scripts' 20 epochs; `aug_loss` and `qk_matrix` follow the scripts (on for W4A4, off
 * weight-only). Not here: the authors' full-matrix transform after the norms (`use_ln_matrix`,
 * weight-only; it cannot be folded into an RMSNorm and would be a run-time side tensor), OPT's
 * shifts, and activation quantization of `q·kᵀ` and the attention's values. The activation
 * quantizer trained through is the runtime's (per token, symmetric), with a straight-through
 * estimator.
 *
 * @module
 */
import type { Method, MethodContext } from "./method.ts";
import type { LayerWeights, LinearName, LlamaModel, QuantizedMatrix } from "../../core/model.ts";
import { LINEAR_NAMES } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { elementFormats, FormatSettingsError } from "../../kernels/formats/registry.ts";
import type { IntQuantConfig } from "../../kernels/formats/int.ts";
import { roundHalfEven } from "../../kernels/formats/int.ts";
import { roundScale, SCALE_DTYPE_MIN } from "../../kernels/formats/scale_dtype.ts";
import { runtimeQuantization } from "../../kernels/formats/runtime_quant.ts";
import { cpuBlockKernels } from "../../kernels/cpu/block_interpreter.ts";
import { AdamW } from "../../kernels/cpu/adamw.ts";
import { blockLossAndGradients, type TrainLayer } from "../../kernels/cpu/backward.ts";
import {
  clipParams,
  type ClipQuant,
  clipQuantBackward,
  clipQuantize,
  type ClipQuantized,
  initClipQuant,
} from "../../kernels/cpu/clip_quant.ts";
import {
  calibrationWindows,
  matrixBuffers,
  MemoryMeter,
  resolveCalibration,
} from "./calibration.ts";
import {
  type BlockResult,
  type BlockStreams,
  type LayerContext,
  quantizeLayers,
} from "./sequential.ts";
import { decoded } from "./awq.ts";
import { maxInto } from "./smoothquant.ts";
import {
  type AffineMasks,
  type AffineParams,
  type AffineShape,
  bandMask,
  type FloatLayer,
  foldAffine,
  identityBlocks,
  maskBand,
  truncateSmall,
} from "./affine_transform.ts";
import { withRuntime } from "./runtime.ts";
import type { BlockValue } from "../../core/graph.ts";

/**
 * Options and their defaults (the authors'; `null`: by format — `stability_factor` 0.1 with
 * activations and 1e-2 without, `aug_loss` and `qk_matrix` on with activations).
 */
export const AFFINEQUANT_OPTIONS = {
  calibration: { dataset: "", samples: 128, seq_len: 512 },
  epochs: 20,
  alpha: 0.5,
  let_lr: 5e-3,
  lwc_lr: 1e-2,
  weight_decay: 0,
  stability_factor: null as number | null,
  aug_loss: null as boolean | null,
  qk_matrix: null as boolean | null,
};

/** Thrown for an option value or a model AffineQuant cannot run with. */
export class AffineQuantError extends Error {
  override name = "AffineQuantError";
}

/** The training settings, resolved for a format with or without activation quantization. */
export interface AffineSettings {
  epochs: number;
  alpha: number;
  letLr: number;
  lwcLr: number;
  weightDecay: number;
  stabilityFactor: number;
  augLoss: boolean;
  qkMatrix: boolean;
}

/** The options checked and resolved (`activations`: whether the format quantizes them). */
export function affineSettings(
  options: Record<string, unknown>,
  activations: boolean,
): AffineSettings {
  const o = { ...AFFINEQUANT_OPTIONS, ...options };
  const positive = (name: string, v: unknown, zero = false) => {
    if (typeof v !== "number" || !(zero ? v >= 0 : v > 0) || !Number.isFinite(v)) {
      throw new AffineQuantError(
        `AffineQuant ${name} must be a ${zero ? "non-negative" : "positive"} number, got ${
          JSON.stringify(v)
        }`,
      );
    }
    return v;
  };
  if (!Number.isInteger(o.epochs) || o.epochs < 1) {
    throw new AffineQuantError(`AffineQuant epochs must be an integer ≥ 1, got ${o.epochs}`);
  }
  if (!(o.alpha >= 0 && o.alpha <= 1)) {
    throw new AffineQuantError(`AffineQuant alpha must be in [0, 1], got ${o.alpha}`);
  }
  const flag = (name: string, v: unknown) => {
    if (v !== null && typeof v !== "boolean") {
      throw new AffineQuantError(
        `AffineQuant ${name} must be true or false, got ${JSON.stringify(v)}`,
      );
    }
    return v ?? activations;
  };
  const sf = o.stability_factor === null
    ? (activations ? 0.1 : 1e-2)
    : positive("stability_factor", o.stability_factor);
  return {
    epochs: o.epochs,
    alpha: o.alpha,
    letLr: positive("let_lr", o.let_lr),
    lwcLr: positive("lwc_lr", o.lwc_lr),
    weightDecay: positive("weight_decay", o.weight_decay, true),
    stabilityFactor: sf,
    augLoss: flag("aug_loss", o.aug_loss),
    qkMatrix: flag("qk_matrix", o.qk_matrix),
  };
}

/** Bits of the format's run-time activation quantization (undefined: none). */
function activationBits(format: FormatSpec): number | undefined {
  const a = runtimeQuantization(format)?.activations;
  if (a === undefined) return undefined;
  const m = /^int(\d)$/.exec(a);
  return m ? Number(m[1]) : NaN;
}

/** Why AffineQuant cannot produce `format`, or undefined when it can. */
function unsupported(format: FormatSpec): string | undefined {
  const element = elementFormats.get(format.weights);
  if (element.kind === "float") {
    return `method "affinequant" quantizes; format "${format.id}" is ${format.weights}, the ` +
      `unquantized baseline (use method none)`;
  }
  if (element.kind !== "int") {
    return `method "affinequant" learns integer clipping ranges; format "${format.id}" is ` +
      `${format.weights} (use int2 … int8)`;
  }
  const reason = element.unsupported(format);
  if (reason !== undefined) return reason;
  const config = element.intConfig(format);
  if (config.group < 0) return `method "affinequant" clips per channel or group, not per tensor`;
  if (config.restricted) return `method "affinequant" does not quantize to range: restricted`;
  if (Number.isNaN(activationBits(format))) {
    return `method "affinequant" trains through integer activations (int2 … int8); format ` +
      `"${format.id}" has activations ${JSON.stringify(format.options.activations)}`;
  }
  return undefined;
}

/** AffineQuant over a whole model (see the module notes). */
async function quantizeModel(
  model: LlamaModel,
  format: FormatSpec,
  options: Record<string, unknown>,
  ctx: MethodContext,
): Promise<LlamaModel> {
  const element = elementFormats.get(format.weights);
  const reason = unsupported(format);
  if (reason !== undefined || element.kind !== "int") throw new FormatSettingsError(reason);
  const act = activationBits(format);
  const settings = affineSettings(options, act !== undefined);
  const o = { ...AFFINEQUANT_OPTIONS, ...options };
  const calibration = resolveCalibration("affinequant", o.calibration, ctx, model.config.maxSeqLen);
  const windows = await calibrationWindows(model, calibration, ctx.seed);
  const meter = new MemoryMeter();
  const quant = element.intConfig(format);
  const layers = await quantizeLayers(
    model,
    {
      kind: "block",
      quantizeBlock: (streams, layer) =>
        affineBlock(model, streams, layer, quant, act, settings, format),
    },
    windows,
    meter,
  );
  ctx.record?.({ quantize_peak_bytes: meter.peak });
  return withRuntime({ ...model, weights: { ...model.weights, layers } }, format);
}

/** Largest value per input column (`W.max(dim=0)`, signed, as the authors take it). */
function columnMax(w: Float64Array, cols: number): Float64Array {
  const m = new Float64Array(cols).fill(-Infinity);
  for (let i = 0; i < w.length; i++) m[i % cols] = Math.max(m[i % cols]!, w[i]!);
  return m;
}

/** SmoothQuant's initial scales `max|X_j|^α / max(W_j, 1e-5)^(1−α)`, clamped at 1e-5. */
function initScales(act: Float32Array, wMax: Float64Array, alpha: number): Float64Array {
  return Float64Array.from(act, (a, j) =>
    Math.max(
      Math.pow(Math.max(a, 1e-5), alpha) / Math.pow(Math.max(wMax[j]!, 1e-5), 1 - alpha),
      1e-5,
    ));
}

/** The initial transforms of a block from the float block's captures. */
export function initAffine(
  shape: AffineShape,
  layer: FloatLayer,
  captures: Map<BlockValue, Float32Array[]>,
  alpha: number,
): AffineParams {
  const actMax = (tap: BlockValue, cols: number) => {
    const m = new Float32Array(cols);
    for (const x of captures.get(tap)!) maxInto(m, x);
    return m;
  };
  const { dim, nHeads, nKvHeads, headDim: d } = shape;
  const oCols = nHeads * d;
  const so = initScales(actMax("att", oCols), columnMax(layer.wo, oCols), alpha);
  const out = new Float64Array(nKvHeads * d * d);
  const rep = nHeads / nKvHeads;
  for (let h = 0; h < nHeads; h++) {
    const g = Math.floor(h / rep);
    for (let i = 0; i < d; i++) {
      const at = g * d * d + i * d + i;
      out[at] = Math.max(out[at]!, so[h * d + i]!);
    }
  }
  return {
    qkv: initScales(actMax("xb", dim), columnMax(layer.wq, dim), alpha),
    fc: initScales(actMax("fb", dim), columnMax(layer.w3, dim), alpha),
    out,
    qk: identityBlocks(nKvHeads, d),
  };
}

/** The masks of epoch `epoch` of `epochs`. */
export function epochMasks(
  d: number,
  epoch: number,
  epochs: number,
  settings: Pick<AffineSettings, "stabilityFactor" | "qkMatrix">,
): AffineMasks {
  const band = maskBand(d, epoch, epochs);
  const out = bandMask(d, band, settings.stabilityFactor);
  return { out, qk: settings.qkMatrix ? out : bandMask(d, 1, settings.stabilityFactor) };
}

/** A block's learned state: the transforms and each linear's clipping quantizer. */
export interface AffineState {
  params: AffineParams;
  clips: Record<LinearName, ClipQuant>;
}

/** One training step's loss and the gradients of every learned tensor. */
export interface AffineStep {
  loss: number;
  params: AffineParams;
  clips: Record<LinearName, { upper: Float64Array; lower: Float64Array }>;
}

/** Rows and columns of each linear of a block. */
export type LinearShapes = Record<LinearName, { rows: number; cols: number }>;

/**
 * The block loss of one window and its gradients w.r.t. the transforms and the clipping factors
 * (`quantize: false` skips the weight quantization: the transforms' gradient alone, smooth).
 */
export function affineStep(
  config: Parameters<typeof blockLossAndGradients>[0] & AffineShape,
  float: FloatLayer,
  shapes: LinearShapes,
  state: AffineState,
  masks: AffineMasks,
  x: Float64Array,
  targets: readonly Float64Array[],
  activationBits: number | undefined,
  quantize = true,
): AffineStep {
  const { layer: folded, back } = foldAffine(config, float, state.params, masks);
  const saved = {} as Record<LinearName, ClipQuantized>;
  const train = { attnNorm: folded.attnNorm, ffnNorm: folded.ffnNorm } as TrainLayer;
  for (const n of LINEAR_NAMES) {
    const { rows, cols } = shapes[n];
    const w = quantize
      ? (saved[n] = clipQuantize(folded[n], rows, cols, state.clips[n])).wq
      : folded[n];
    train[n] = { rows, cols, w };
  }
  const res = blockLossAndGradients(config, train, x, targets, activationBits);
  const clips = {} as AffineStep["clips"];
  const dfold = {
    attnNorm: res.gradients.get("attnNorm")!,
    ffnNorm: res.gradients.get("ffnNorm")!,
  } as FloatLayer;
  for (const n of LINEAR_NAMES) {
    const { rows, cols } = shapes[n];
    const q = state.clips[n];
    const g = { upper: new Float64Array(q.upper.length), lower: new Float64Array(q.lower.length) };
    const dwq = res.gradients.get(n)!;
    dfold[n] = quantize ? clipQuantBackward(dwq, rows, cols, q, saved[n], g.upper, g.lower) : dwq;
    clips[n] = g;
  }
  return { loss: res.loss, params: back(dfold), clips };
}

/** `w` rounded with the learned clipping onto the integer format. */
function storeInt(
  w: Float64Array,
  rows: number,
  cols: number,
  q: ClipQuant,
  config: IntQuantConfig,
): QuantizedMatrix {
  const dtype = config.scaleDtype ?? "f16";
  const p = clipParams(w, rows, cols, q, (s) => roundScale(s, dtype) || SCALE_DTYPE_MIN[dtype]);
  const groups = Math.ceil(cols / q.groupSize);
  const qmax = 2 ** q.bits - 1;
  const codes = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      const k = r * groups + Math.floor(j / q.groupSize);
      const code = roundHalfEven(w[r * cols + j]! / p.scales[k]!) + p.zeros[k]!;
      codes[r * cols + j] = Math.min(qmax, Math.max(0, code));
    }
  }
  return {
    kind: "int",
    rows,
    cols,
    bits: q.bits,
    groupSize: q.groupSize,
    symmetric: q.symmetric,
    codes,
    scales: Float32Array.from(p.scales),
    zeros: q.symmetric ? null : Uint8Array.from(p.zeros),
    scaleDtype: dtype,
    perTensor: false,
  };
}

/** One block trained and quantized (see the module notes). */
async function affineBlock(
  model: LlamaModel,
  streams: BlockStreams,
  layer: LayerContext,
  quant: IntQuantConfig,
  act: number | undefined,
  settings: AffineSettings,
  format: FormatSpec,
): Promise<BlockResult> {
  const { original, steps, block, index } = layer;
  const c = model.config;
  if (
    original.bq || original.bk || original.bv || original.bo || original.qNorm || original.kNorm
  ) {
    throw new AffineQuantError(
      `Layer ${index} has attention biases or q/k norms; AffineQuant here folds Llama blocks only`,
    );
  }
  const f64 = (m: Float32Array) => Float64Array.from(m);
  const float = { attnNorm: f64(original.attnNorm), ffnNorm: f64(original.ffnNorm) } as FloatLayer;
  const shapes = {} as LinearShapes;
  const clips = {} as Record<LinearName, ClipQuant>;
  for (const n of LINEAR_NAMES) {
    const { rows, cols } = original[n];
    float[n] = Float64Array.from(decoded(original[n]));
    shapes[n] = { rows, cols };
    clips[n] = initClipQuant(rows, cols, quant);
  }
  const state: AffineState = {
    params: initAffine(c, float, streams.captures, settings.alpha),
    clips,
  };
  const inputs = streams.inputs.map(f64);
  const targets = streams.targets.map((t, i) => {
    const list = [f64(t)];
    if (settings.augLoss) list.push(f64(block.forward(original, streams.inputs[i]!)));
    return list;
  });
  // The float64 copies the training holds while the block trains.
  const held = layer.meter.hold(inputs, targets.flat());
  const letOpt = new AdamW({ lr: settings.letLr, weightDecay: settings.weightDecay });
  const lwcOpt = new AdamW({ lr: settings.lwcLr, weightDecay: settings.weightDecay });
  const named = (p: AffineParams) => new Map(Object.entries(p) as [string, Float64Array][]);
  const d = c.headDim;
  let masks = epochMasks(d, 0, settings.epochs, settings);
  for (let epoch = 0; epoch < settings.epochs; epoch++) {
    masks = epochMasks(d, epoch, settings.epochs, settings);
    let total = 0;
    for (let j = 0; j < inputs.length; j++) {
      for (const p of Object.values(state.params)) truncateSmall(p);
      const step = affineStep(c, float, shapes, state, masks, inputs[j]!, targets[j]!, act);
      if (!Number.isFinite(step.loss)) {
        throw new AffineQuantError(
          `Layer ${index}: the block loss is ${step.loss} at epoch ${epoch}`,
        );
      }
      total += step.loss;
      letOpt.step(named(state.params), named(step.params));
      const lwcParams = new Map<string, Float64Array>();
      const lwcGrads = new Map<string, Float64Array>();
      for (const n of LINEAR_NAMES) {
        lwcParams.set(`${n}.upper`, state.clips[n].upper).set(`${n}.lower`, state.clips[n].lower);
        lwcGrads.set(`${n}.upper`, step.clips[n].upper).set(`${n}.lower`, step.clips[n].lower);
      }
      lwcOpt.step(lwcParams, lwcGrads);
    }
    console.error(
      `affinequant: layer ${index} epoch ${epoch + 1}/${settings.epochs} loss ${
        (total / inputs.length).toExponential(4)
      }`,
    );
    await Promise.resolve();
  }
  for (const p of Object.values(state.params)) truncateSmall(p);
  const folded = foldAffine(c, float, state.params, masks).layer;
  const weights: LayerWeights = {
    ...original,
    attnNorm: Float32Array.from(folded.attnNorm),
    ffnNorm: Float32Array.from(folded.ffnNorm),
  };
  for (const n of LINEAR_NAMES) {
    weights[n] = storeInt(folded[n], shapes[n].rows, shapes[n].cols, state.clips[n], quant);
    layer.meter.hold(matrixBuffers(weights[n]));
  }
  layer.meter.release(held);
  const activations = runtimeQuantization(format)?.activations;
  const outputs = streams.inputs.map((x) => {
    const T = x.length / c.dim;
    const v = new Map([["x", x]]) as Parameters<typeof block.run>[2];
    const kernels = activations === undefined
      ? {}
      : { linear: cpuBlockKernels(c, 0, T, { activations }).linear };
    block.run(steps, weights, v, T, { kernels });
    return v.get("out")!;
  });
  return { weights, outputs };
}

/** AffineQuant: learned affine transforms and clipping, block by block (W4A4, weight-only). */
export const affinequant: Method = {
  name: "affinequant",
  description: "AffineQuant (learned affine transforms + weight clipping, block-wise; W4A4)",
  options: AFFINEQUANT_OPTIONS,
  unsupported,
  checkOptions: (options) => void affineSettings(options, false),
  quantize: quantizeModel,
};
