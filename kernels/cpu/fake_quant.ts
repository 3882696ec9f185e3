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
import { groupParams, roundHalfEven } from "../formats/int.ts";
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
}

/**
 * Scales and zero points by round-to-nearest over each group, as `quantizeInt` with float32
 * scales picks them (symmetric: `max|w| / ((2^b − 1) / 2)`, zero `2^(b−1)`; asymmetric:
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
      const p = groupParams(data, start, end, config.bits, config.symmetric, 1, "f32");
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
