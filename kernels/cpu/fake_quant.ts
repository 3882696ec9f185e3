/**
 * Fake quantization of a linear's weight for quantization-aware training, with a straight-through
 * estimator (STE). Per group of `groupSize` input columns of row `r` (scale `s`, integer zero point
 * `z`, `qmax = 2^bits − 1`), as the int formats (`kernels/formats/int.ts`) decode:
 *
 * `v = w · c`, `u = v / s`, `q = clamp(round(u) + z, 0, qmax)`, `w_q = s · (q − z)`
 *
 * where `c` is an optional learned per-input-channel factor (a diagonal transform, as AWQ's and
 * OmniQuant's smoothing): the linear then computes `y = (x ⊘ c) · w_qᵀ`, which without rounding is
 * `x · wᵀ` for any `c`. `round` is round-half-to-even, like `int.ts`.
 *
 * Gradients (the STE treats `round(u)` as `u + δ` with `δ = round(u) − u` held fixed):
 * - `w` (and `v`): passed straight through where `round(u) + z` lies inside `[0, qmax]`, zero where
 *   the clamp bites.
 * - `s`: LSQ's rule (Esser et al. 2020, eq. 3) without its gradient scale `1/sqrt(N·qmax)`:
 *   `∂w_q/∂s = round(u) − u` inside the range, `q − z` (the clamped code) outside.
 * - `c`: through `v = w · c` (the STE gradient of `v` times `w`) and through `x ⊘ c`
 *   (`−x / c²` times the input gradient).
 * - `z`: not learned (an integer; fixed at initialization).
 *
 * @module
 */
import type { KvCacheSettings, ScaleDtype } from "../../core/model.ts";
import { groupParams, roundHalfEven } from "../formats/int.ts";
import { quantizeKvGroup } from "../formats/runtime_quant.ts";
import { linearBackward, linearForward } from "./grad_ops.ts";

/** Thrown for a fake-quantization setting this module does not support. */
export class FakeQuantError extends RangeError {
  override name = "FakeQuantError";
}

/** The fake quantizer of one `[rows][cols]` weight and its learned parameters. */
export interface FakeQuant {
  bits: number;
  /** Input columns per scale (the last group may be short). */
  groupSize: number;
  /** `rows × ceil(cols / groupSize)` scales, learned. */
  scales: Float64Array;
  /** Integer zero points, one per scale; fixed. */
  zeros: Float64Array;
  /** Optional learned per-input-channel factor `c` (`cols` entries). */
  channel?: Float64Array;
}

/** How to initialize a {@linkcode FakeQuant}. */
export interface FakeQuantConfig {
  bits: number;
  /** Input columns per scale; 0 for one scale per row. */
  group: number;
  symmetric: boolean;
  /** Add a learned per-input-channel factor, initialized to 1. */
  channel?: boolean;
  /** How the initial scales are rounded, as a stored format holds them; default f32. */
  scaleDtype?: ScaleDtype;
}

/**
 * Scales and zero points by round-to-nearest over each group, as `quantizeInt` picks them with
 * `scaleDtype` scales (float32 by default) (symmetric: `max|w| / ((2^b − 1) / 2)`, zero `2^(b−1)`; asymmetric:
 * `(max − min) / (2^b − 1)`, `zero = round(−min / s)`).
 *
 * @example
 * ```ts
 * const fq = initFakeQuant(new Float64Array([1, -2, 3, 4]), 1, 4, { bits: 4, group: 0, symmetric: true });
 * fakeQuantize(new Float64Array([1, -2, 3, 4]), 1, 4, fq).wq; // ≈ [1.07, -2.13, 3.2, 3.73]: 4 clamps
 * ```
 */
export function initFakeQuant(
  w: Float64Array,
  rows: number,
  cols: number,
  config: FakeQuantConfig,
): FakeQuant {
  if (!Number.isInteger(config.bits) || config.bits < 2 || config.bits > 8) {
    throw new FakeQuantError(`Fake quantization to ${config.bits} bits; use 2 to 8 bits`);
  }
  if (!Number.isInteger(config.group) || config.group < 0) {
    throw new FakeQuantError(`Group size ${config.group} must be a non-negative integer`);
  }
  const groupSize = config.group > 0 ? Math.min(config.group, cols) : cols;
  const groups = Math.ceil(cols / groupSize);
  const data = Float32Array.from(w);
  const scales = new Float64Array(rows * groups);
  const zeros = new Float64Array(rows * groups);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const start = r * cols + g * groupSize;
      const end = Math.min(start + groupSize, (r + 1) * cols);
      const p = groupParams(
        data,
        start,
        end,
        config.bits,
        config.symmetric,
        1,
        config.scaleDtype ?? "f32",
      );
      scales[r * groups + g] = p.scale;
      zeros[r * groups + g] = p.zero;
    }
  }
  const fq: FakeQuant = { bits: config.bits, groupSize, scales, zeros };
  if (config.channel) fq.channel = new Float64Array(cols).fill(1);
  return fq;
}

/** The fake-quantized weight and what the backward needs. */
export interface FakeQuantized {
  wq: Float64Array;
  /** `round(u) − u` where inside the range; the clamped code minus `z` where outside. */
  scaleGrad: Float64Array;
  /** 1 where `round(u) + z` lies in `[0, qmax]`. */
  inRange: Uint8Array;
}

/** `w_q` of a `[rows][cols]` weight (see the module doc). */
export function fakeQuantize(
  w: Float64Array,
  rows: number,
  cols: number,
  fq: FakeQuant,
): FakeQuantized {
  const groups = Math.ceil(cols / fq.groupSize);
  const qmax = 2 ** fq.bits - 1;
  const wq = new Float64Array(w.length);
  const scaleGrad = new Float64Array(w.length);
  const inRange = new Uint8Array(w.length);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      const i = r * cols + j;
      const g = r * groups + Math.floor(j / fq.groupSize);
      const s = fq.scales[g]!;
      const z = fq.zeros[g]!;
      const u = (w[i]! * (fq.channel ? fq.channel[j]! : 1)) / s;
      const code = roundHalfEven(u) + z;
      const q = Math.min(qmax, Math.max(0, code));
      wq[i] = s * (q - z);
      if (code === q) {
        inRange[i] = 1;
        scaleGrad[i] = code - z - u;
      } else {
        scaleGrad[i] = q - z;
      }
    }
  }
  return { wq, scaleGrad, inRange };
}

/**
 * STE backward of {@linkcode fakeQuantize}: from `dwq` (the gradient w.r.t. `w_q`), returns the
 * gradient w.r.t. `w` and adds those w.r.t. the scales and (through `v = w · c`) the channel
 * factor into `dscales` and `dchannel`.
 */
export function fakeQuantBackward(
  dwq: Float64Array,
  w: Float64Array,
  rows: number,
  cols: number,
  fq: FakeQuant,
  saved: FakeQuantized,
  dscales: Float64Array,
  dchannel?: Float64Array,
): Float64Array {
  const groups = Math.ceil(cols / fq.groupSize);
  const dw = new Float64Array(w.length);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      const i = r * cols + j;
      dscales[r * groups + Math.floor(j / fq.groupSize)]! += dwq[i]! * saved.scaleGrad[i]!;
      if (!saved.inRange[i]) continue;
      const c = fq.channel ? fq.channel[j]! : 1;
      dw[i] = dwq[i]! * c;
      if (dchannel) dchannel[j]! += dwq[i]! * w[i]!;
    }
  }
  return dw;
}

/** Gradients of a fake-quantized linear (see {@linkcode fakeQuantLinear}). */
export interface FakeQuantLinearGrads {
  dx: Float64Array;
  dw: Float64Array;
  dscales: Float64Array;
  /** When the quantizer has a channel factor. */
  dchannel?: Float64Array;
}

/**
 * A fake-quantized linear `y = (x ⊘ c) · w_qᵀ (+ bias)` of a `[rows][cols]` weight `w`; returns the
 * output and its backward, which adds the bias gradient into `dbias` when given.
 */
export function fakeQuantLinear(
  x: Float64Array,
  w: Float64Array,
  rows: number,
  cols: number,
  fq: FakeQuant,
  bias?: Float64Array,
): { y: Float64Array; back: (dy: Float64Array, dbias?: Float64Array) => FakeQuantLinearGrads } {
  const saved = fakeQuantize(w, rows, cols, fq);
  const channel = fq.channel;
  const xin = channel ? x.map((v, i) => v / channel[i % cols]!) : x;
  const y = linearForward(xin, saved.wq, rows, cols, bias);
  const back = (dy: Float64Array, dbias?: Float64Array): FakeQuantLinearGrads => {
    const dwq = new Float64Array(rows * cols);
    const dxin = linearBackward(dy, xin, saved.wq, rows, cols, dwq, dbias);
    const dscales = new Float64Array(fq.scales.length);
    const dchannel = channel && new Float64Array(cols);
    const dw = fakeQuantBackward(dwq, w, rows, cols, fq, saved, dscales, dchannel);
    if (!channel) return { dx: dxin, dw, dscales };
    // x ⊘ c: ∂/∂x = 1/c, ∂/∂c = −x/c².
    const dx = dxin.map((g, i) => {
      const c = channel[i % cols]!;
      dchannel![i % cols]! -= (g * x[i]!) / (c * c);
      return g / c;
    });
    return { dx, dw, dscales, dchannel };
  };
  return { y, back };
}

/**
 * The authors' straight-through window for activations and the KV cache (LLM-QAT's
 * `act_clip_val = [−2, 2]`): the gradient passes where the unquantized value lies strictly inside
 * `(−2, 2)` and is zero elsewhere.
 */
export const TOKEN_STE_CLIP = 2;

/**
 * Dynamic per-token symmetric fake quantization of `[T][width]` values to `bits`, as the run-time
 * int activations decode (`kernels/formats/runtime_quant.ts`): per row, `scale = max(amax, 1e-5) /
 * (2^(b−1) − 1)`, `x_q = round(x / scale) · scale` (ties to even). The scale is not
 * differentiated (LLM-QAT's quantizers detach it); the backward is the STE inside
 * {@linkcode TOKEN_STE_CLIP}.
 *
 * @example
 * ```ts
 * const { y } = fakeQuantTokens(new Float64Array([1, -0.5, 0.25, 0.1]), 2, 8);
 * ```
 */
export function fakeQuantTokens(
  x: Float64Array,
  width: number,
  bits: number,
): { y: Float64Array; back: (dy: Float64Array) => Float64Array } {
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) {
    throw new FakeQuantError(`Per-token fake quantization to ${bits} bits; use 2 to 8 bits`);
  }
  const qmax = 2 ** (bits - 1) - 1;
  const y = new Float64Array(x.length);
  for (let start = 0; start < x.length; start += width) {
    let amax = 0;
    for (let i = start; i < start + width; i++) amax = Math.max(amax, Math.abs(x[i]!));
    const scale = Math.fround(Math.max(amax, Math.fround(1e-5)) / qmax);
    for (let i = start; i < start + width; i++) {
      y[i] = roundHalfEven(Math.fround(x[i]! / scale)) * scale;
    }
  }
  const back = (dy: Float64Array) => dy.map((g, i) => (Math.abs(x[i]!) < TOKEN_STE_CLIP ? g : 0));
  return { y, back };
}

/**
 * Fake quantization of a sequence's keys or values (`[T][kvDim]`, keys after RoPE) as the run-time
 * quantized KV cache holds them (`kernels/cpu/kv_cache.ts`, KIVI's groups): keys per channel over
 * each complete group of tokens (`group`, or `residual` when 0; an incomplete last group stays in
 * full precision), values per token over groups of `group` channels of a head (a head when 0).
 * Unlike the cache, the residual window is not kept in full precision: every query sees the
 * quantized entries, the harder case. The backward is the plain straight-through estimator.
 */
export function fakeQuantKv(
  x: Float64Array,
  kvDim: number,
  headDim: number,
  which: "keys" | "values",
  settings: KvCacheSettings,
): { y: Float64Array; back: (dy: Float64Array) => Float64Array } {
  const src = Float32Array.from(x);
  const dst = src.slice();
  const T = x.length / kvDim;
  if (which === "keys") {
    const group = settings.group > 0 ? settings.group : settings.residual;
    for (let t0 = 0; t0 + group <= T; t0 += group) {
      for (let c = 0; c < kvDim; c++) {
        quantizeKvGroup(src, dst, t0 * kvDim + c, kvDim, group, settings.format);
      }
    }
  } else {
    const group = settings.group > 0 ? Math.min(settings.group, headDim) : headDim;
    for (let start = 0; start < x.length; start += group) {
      quantizeKvGroup(src, dst, start, 1, group, settings.format);
    }
  }
  return { y: Float64Array.from(dst), back: (dy) => dy };
}
