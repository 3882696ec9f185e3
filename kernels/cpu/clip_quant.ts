/**
 * Learnable weight clipping (LWC, OmniQuant; AffineQuant's weight quantizer): fake quantization of
 * a `[rows][cols]` weight per group of `groupSize` input columns, whose range is shrunk by two
 * learned factors per group through a sigmoid, with a straight-through estimator (STE) for the
 * rounding. Per group, with `hi = max(max w, 0)`, `lo = min(min w, 0)` (the range always holds
 * zero, as `int.ts` picks it, so the zero point fits the stored codes) and `qmax = 2^b − 1`:
 *
 * - asymmetric: `scale = (σ(γ)·hi − σ(β)·lo) / qmax`, `zero = round(−σ(β)·lo / scale)`;
 * - symmetric (`int.ts`'s full range): `scale = 2·max(σ(γ)·hi, −σ(β)·lo) / qmax`,
 *   `zero = 2^(b−1)`;
 * - `q = clamp(round(w / scale) + zero, 0, qmax)`, `w_q = scale · (q − zero)`.
 *
 * Gradients, as PyTorch's autograd gives them for OmniQuant's `round_ste` quantizer: `w` passes
 * straight through where the code is not clamped (and, through `hi`/`lo`, into the group's
 * largest and smallest element); the scale gets `round(u) − u` inside the range and `q − zero` where
 * clamped (`u = w / scale`); `γ`, `β` get theirs through the scale (the zero point is rounded
 * without an STE and passes none). The factors start at 4 (`σ(4) ≈ 0.982`), as OmniQuant's.
 *
 * @module
 */
import { roundHalfEven } from "../formats/int.ts";
import { fakeQuantize } from "./fake_quant.ts";

/** Thrown for a clipping quantizer setting this module does not support. */
export class ClipQuantError extends RangeError {
  override name = "ClipQuantError";
}

/** OmniQuant's initial clipping factor (before the sigmoid). */
export const LWC_INIT = 4;

/** The clipping quantizer of one `[rows][cols]` weight and its learned factors. */
export interface ClipQuant {
  bits: number;
  /** Input columns per group (the last group may be short). */
  groupSize: number;
  symmetric: boolean;
  /** `γ`: one per group (`rows × ceil(cols / groupSize)`), learned. */
  upper: Float64Array;
  /** `β`: one per group, learned. */
  lower: Float64Array;
}

/** A clipping quantizer with factors at {@linkcode LWC_INIT}; `group` 0 is one group per row. */
export function initClipQuant(
  rows: number,
  cols: number,
  config: { bits: number; group: number; symmetric: boolean },
): ClipQuant {
  if (!Number.isInteger(config.bits) || config.bits < 2 || config.bits > 8) {
    throw new ClipQuantError(`Clipped quantization to ${config.bits} bits; use 2 to 8 bits`);
  }
  if (!Number.isInteger(config.group) || config.group < 0) {
    throw new ClipQuantError(`Group size ${config.group} must be a non-negative integer`);
  }
  const groupSize = config.group > 0 ? Math.min(config.group, cols) : cols;
  const n = rows * Math.ceil(cols / groupSize);
  return {
    bits: config.bits,
    groupSize,
    symmetric: config.symmetric,
    upper: new Float64Array(n).fill(LWC_INIT),
    lower: new Float64Array(n).fill(LWC_INIT),
  };
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** Scales and zero points of every group, and what the backward needs of them. */
export interface ClipParams {
  scales: Float64Array;
  zeros: Float64Array;
  /** Index of each group's largest and smallest element, or −1 where zero bounds the range. */
  argHi: Int32Array;
  argLo: Int32Array;
  hi: Float64Array;
  lo: Float64Array;
}

/**
 * The scale and zero point of every group (see the module notes); `roundScale` rounds each scale
 * as the stored format holds it (the zero point then follows the rounded scale).
 */
export function clipParams(
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  q: ClipQuant,
  roundScale: (s: number) => number = (s) => s,
): ClipParams {
  const groups = Math.ceil(cols / q.groupSize);
  const n = rows * groups;
  const p: ClipParams = {
    scales: new Float64Array(n),
    zeros: new Float64Array(n),
    argHi: new Int32Array(n).fill(-1),
    argLo: new Int32Array(n).fill(-1),
    hi: new Float64Array(n),
    lo: new Float64Array(n),
  };
  const qmax = 2 ** q.bits - 1;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const k = r * groups + g;
      for (let j = g * q.groupSize; j < Math.min(cols, (g + 1) * q.groupSize); j++) {
        const i = r * cols + j;
        if (w[i]! > p.hi[k]!) [p.hi[k], p.argHi[k]] = [w[i]!, i];
        if (w[i]! < p.lo[k]!) [p.lo[k], p.argLo[k]] = [w[i]!, i];
      }
      const xmax = sigmoid(q.upper[k]!) * p.hi[k]!;
      const xmin = sigmoid(q.lower[k]!) * p.lo[k]!;
      const range = q.symmetric ? 2 * Math.max(xmax, -xmin) : xmax - xmin;
      // An all-zero group decodes to zeros with any positive scale.
      const scale = range > 0 ? roundScale(range / qmax) : 1;
      p.scales[k] = scale;
      p.zeros[k] = q.symmetric
        ? 2 ** (q.bits - 1)
        : Math.min(qmax, Math.max(0, roundHalfEven(-xmin / scale)));
    }
  }
  return p;
}

/** The fake-quantized weight and what the backward needs. */
export interface ClipQuantized {
  wq: Float64Array;
  params: ClipParams;
  /** `round(u) − u` where the code is inside the range; the clamped code minus the zero outside. */
  scaleGrad: Float64Array;
  /** 1 where the code is not clamped. */
  inRange: Uint8Array;
}

/** `w_q` of a `[rows][cols]` weight (see the module notes). */
export function clipQuantize(
  w: Float64Array,
  rows: number,
  cols: number,
  q: ClipQuant,
): ClipQuantized {
  const params = clipParams(w, rows, cols, q);
  // Rounding to the clipped grid is fake quantization with these scales and zero points.
  const { scales, zeros } = params;
  return {
    ...fakeQuantize(w, rows, cols, { bits: q.bits, groupSize: q.groupSize, scales, zeros }),
    params,
  };
}

/**
 * STE backward of {@linkcode clipQuantize}: from `dwq`, returns the gradient w.r.t. `w` and adds
 * those w.r.t. the factors into `dupper` and `dlower`.
 */
export function clipQuantBackward(
  dwq: Float64Array,
  rows: number,
  cols: number,
  q: ClipQuant,
  saved: ClipQuantized,
  dupper: Float64Array,
  dlower: Float64Array,
): Float64Array {
  const groups = Math.ceil(cols / q.groupSize);
  const qmax = 2 ** q.bits - 1;
  const dw = new Float64Array(dwq.length);
  const dscale = new Float64Array(rows * groups);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      const i = r * cols + j;
      dscale[r * groups + Math.floor(j / q.groupSize)]! += dwq[i]! * saved.scaleGrad[i]!;
      if (saved.inRange[i]) dw[i] = dwq[i]!;
    }
  }
  const { params } = saved;
  for (let k = 0; k < dscale.length; k++) {
    if (!(params.scales[k]! > 0) || (params.hi[k] === 0 && params.lo[k] === 0)) continue;
    const su = sigmoid(q.upper[k]!);
    const sl = sigmoid(q.lower[k]!);
    // d scale / d xmax and d scale / d xmin.
    let dmax: number;
    let dmin: number;
    if (q.symmetric) {
      const upperWins = su * params.hi[k]! >= -sl * params.lo[k]!;
      dmax = upperWins ? (2 / qmax) * dscale[k]! : 0;
      dmin = upperWins ? 0 : (-2 / qmax) * dscale[k]!;
    } else {
      dmax = dscale[k]! / qmax;
      dmin = -dscale[k]! / qmax;
    }
    dupper[k]! += dmax * params.hi[k]! * su * (1 - su);
    dlower[k]! += dmin * params.lo[k]! * sl * (1 - sl);
    if (params.argHi[k]! >= 0) dw[params.argHi[k]!]! += dmax * su;
    if (params.argLo[k]! >= 0) dw[params.argLo[k]!]! += dmin * sl;
  }
  return dw;
}
