/**
 * AQLM (Egiazarian et al., 2024: additive quantization of language models), as the authors'
 * repository (Vahe1994/AQLM: `main.py`, `aq_engine.py`, `src/aq.py`, `src/kmeans.py`,
 * `src/beam_search_xtx.py`) runs it, into the `aqlm_<M>x<B>` formats (`kernels/formats/aqlm.ts`):
 * groups of `g` weights (`in_group_size`: the suite `group`, default 8) as sums of `M` codewords
 * from `M` codebooks of `2^B` entries, times a scale per output channel (`out_group_size` 1,
 * `scale_nbits` 0, codebook values stored as halves: `codebook_value_nbits` 16).
 *
 * The layers are quantized by the sequential driver (`sequential.ts`): with `true_sequential`
 * (off by default, as the reference's flag) the block's groups of linears in order, each from
 * inputs computed with the earlier groups quantized; otherwise every linear from the float
 * block's inputs. For each linear, `XXᵀ` is the mean over calibration tokens of `xxᵀ`,
 * accumulated in float64 (the reference's `add_batch`), and the weights are fitted to
 * `L = ‖(Ŵ − W)X‖² / rows = tr((Ŵ − W) XXᵀ (Ŵ − W)ᵀ) / rows` (`_compute_mse`):
 *
 * 1. initialisation: scales are the rows' L2 norms (+1e-9), codebooks residual k-means of the
 *    scaled rows' groups (`aqlm_kmeans.ts`; `init_max_iter` iterations, seeded by the suite seed
 *    and the linear's place);
 * 2. epochs (at most `max_epochs`): `steps_per_epoch` steps of Adam (`lr`, betas (0, 0.95),
 *    AMSGrad, ε 1e-8, state kept across epochs) on codebooks and scales with the codes fixed;
 *    then a beam search over the codes with codebooks and scales fixed: input groups in a random
 *    order, and within each its codebooks in a random order, every codeword of the current
 *    codebook is tried in every hypothesis of each row's beam (`beam_size`), scored by the exact
 *    change of `L`, and the `beam_size` best are kept; each row takes its best hypothesis;
 * 3. the relative-MSE stopping rule: at the first Adam step of an epoch, when `L` over the best
 *    `L` of earlier epochs exceeds `1 − relative_mse_tolerance`, the codebooks, scales and codes
 *    are final (no update after the last beam search); `null` (the reference's default) runs
 *    every epoch.
 *
 * The codebooks and scales are stored as halves once a linear is done, or, with `finetune`, once
 * the block is fine-tuned (`aqlm_finetune.ts`: the reference's `finetune_groupwise`, after every
 * linear of a block is quantized and before the windows go on to the next block; its options are
 * the reference's `finetune_*` with its defaults). The reference always runs that pass
 * (`finetune_max_epochs` 5); here it is off unless `finetune: true`, so that suites written before
 * it keep their numbers. `val_size` windows (default none), drawn with the suite seed, are held out
 * of the calibration set: never quantized from or trained on, they go through the quantized
 * layers and their loss against the float block stops the fine-tuning early (`finetune_early_stop`).
 *
 * @module
 */
import type { Method, MethodContext } from "./method.ts";
import {
  dense,
  type DenseMatrix,
  type LinearName,
  type LlamaModel,
  type Matrix,
} from "../../core/model.ts";
import { wasmMatmul } from "../../kernels/cpu/wasm_matmul.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { seededRandom, shuffledIndices } from "../../core/random.ts";
import {
  aqlmGroups,
  type AqlmScheme,
  buildAqlmMatrix,
  parseAqlmCodec,
} from "../../kernels/formats/aqlm.ts";
import { aqlmInit } from "../../kernels/formats/aqlm_kmeans.ts";
import { elementFormats } from "../../kernels/formats/registry.ts";
import { calibrationWindows, embed, MemoryMeter, resolveCalibration } from "./calibration.ts";
import { decodeMatrix } from "./gptq.ts";
import { quantizeLayers } from "./sequential.ts";
import { withRuntime } from "./runtime.ts";
import {
  AqlmBlock,
  aqlmFinetune,
  type AqlmFinetuneSettings,
  type AqlmFloatParts,
} from "./aqlm_finetune.ts";

/**
 * Options and their defaults: the reference's `main.py` arguments (the scheme comes from the
 * format). `relative_mse_tolerance` is off there (`None`); its README runs 0.01.
 */
export const AQLM_OPTIONS = {
  calibration: { dataset: "", samples: 128, seq_len: 4096 },
  beam_size: 1,
  lr: 1e-4,
  max_epochs: 1000,
  steps_per_epoch: 100,
  relative_mse_tolerance: null as number | null,
  init_max_iter: 100,
  true_sequential: false,
  finetune: false,
  finetune_max_epochs: 5,
  finetune_lr: 1e-5,
  finetune_batch_size: 1,
  finetune_adam_beta1: 0.9,
  finetune_adam_beta2: 0.95,
  finetune_early_stop: 3,
  val_size: 0,
  /**
   * Precision of the gradients' matmul `(Ŵ − W)·XXᵀ`: "float32" (the authors' precision, on the
   * SIMD matmul) or "float64" (slower; with it every step is float64, as a float64 reference).
   */
  gradient_precision: "float32" as "float32" | "float64",
};

/** Thrown for AQLM options out of range. */
export class AqlmOptionsError extends Error {
  override name = "AqlmOptionsError";
}

/** AQLM settings for one linear. */
export interface AqlmSettings {
  beamSize: number;
  lr: number;
  maxEpochs: number;
  stepsPerEpoch: number;
  /** `null`: run every epoch. */
  relativeMseTolerance: number | null;
  initMaxIter: number;
  /** The gradients' matmul in float64 (`gradient_precision`); float32 by default. */
  float64Gradients?: boolean;
}

/** The result of quantizing one linear. */
export interface AqlmResult {
  matrix: Matrix;
  /** Its parts before the codebooks and scales are rounded to halves. */
  parts: AqlmFloatParts;
  /** `L` at each epoch's first Adam step, and after the last epoch. */
  losses: number[];
  /** Epochs run (beam searches done). */
  epochs: number;
}

/** Adam with AMSGrad, as `torch.optim.Adam(amsgrad=True)` without weight decay. */
class AmsGrad {
  #m: Float64Array;
  #v: Float64Array;
  #vmax: Float64Array;
  #t = 0;
  constructor(n: number, readonly lr: number, readonly beta1 = 0, readonly beta2 = 0.95) {
    this.#m = new Float64Array(n);
    this.#v = new Float64Array(n);
    this.#vmax = new Float64Array(n);
  }
  /** One step of `p` along its gradient `grad`. */
  step(p: Float64Array, grad: Float64Array): void {
    this.#t++;
    const { beta1, beta2 } = this;
    const bc1 = 1 - beta1 ** this.#t;
    const bc2 = Math.sqrt(1 - beta2 ** this.#t);
    for (let i = 0; i < p.length; i++) {
      const g = grad[i]!;
      const m = this.#m[i] = beta1 * this.#m[i]! + (1 - beta1) * g;
      const v = this.#v[i] = beta2 * this.#v[i]! + (1 - beta2) * g * g;
      const vmax = this.#vmax[i] = Math.max(this.#vmax[i]!, v);
      p[i]! -= (this.lr / bc1) * m / (Math.sqrt(vmax) / bc2 + 1e-8);
    }
  }
}

/**
 * A linear's AQLM state over padded rows of `width = groups · g` columns: the loss with its
 * gradients, and the beam search over codes.
 */
export class AqlmLinear {
  readonly groups: number;
  readonly width: number;
  readonly size: number;
  /** Reference weights, `rows × width` (zero padded). */
  readonly w: Float64Array;
  /** `XXᵀ`, `width × width` (zero padded: padding weighs nothing in the loss). */
  readonly xtx: Float64Array;
  /** `XXᵀ` in float32 for the gradients' matmul, made on first use. */
  #xtx32?: DenseMatrix;
  constructor(
    readonly scheme: AqlmScheme,
    readonly rows: number,
    readonly cols: number,
    w: Float64Array,
    xtx: Float64Array,
    /** `rows × groups × M`, updated by the beam search. */
    readonly codes: Int32Array,
    /** `M × 2^B × g`, updated by Adam. */
    readonly codebooks: Float64Array,
    /** One per row, updated by Adam. */
    readonly scales: Float64Array,
  ) {
    this.groups = aqlmGroups(scheme, cols);
    this.width = this.groups * scheme.groupSize;
    this.size = 2 ** scheme.bits;
    ({ w: this.w, xtx: this.xtx } = padded(w, xtx, rows, cols, this.width));
  }

  /** The unscaled sums of codewords, `rows × width`. */
  raw(): Float64Array {
    const { codebooks: M, groupSize: g } = this.scheme;
    const out = new Float64Array(this.rows * this.width);
    for (let p = 0; p < this.rows * this.groups; p++) {
      for (let m = 0; m < M; m++) {
        const at = (m * this.size + this.codes[p * M + m]!) * g;
        for (let i = 0; i < g; i++) out[p * g + i]! += this.codebooks[at + i]!;
      }
    }
    return out;
  }

  /** `ŵ − w` (`rows × width`) and the unscaled sums of codewords. */
  #delta(): { raw: Float64Array; delta: Float64Array } {
    const { rows, width } = this;
    const raw = this.raw();
    const delta = new Float64Array(rows * width);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < width; c++) {
        delta[r * width + c] = raw[r * width + c]! * this.scales[r]! - this.w[r * width + c]!;
      }
    }
    return { raw, delta };
  }

  /** `L`, in float64. */
  loss(): number {
    const { rows, width } = this;
    const { delta } = this.#delta();
    let loss = 0;
    for (let r = 0; r < rows; r++) {
      loss += rowLoss(delta.subarray(r * width, (r + 1) * width), this.xtx, width);
    }
    return loss / rows;
  }

  /**
   * Whether the gradients' product runs in float64 rather than on the float32 matmul. float32
   * rounding there parts a run from a float64 reference's in the rare linear whose near-zero,
   * sign-flipping gradients Adam's normalised steps amplify (harness/methods/RESULTS.md, AQLM).
   */
  float64Gradients = false;

  /**
   * The gradients of `L` in codebooks and scales: `∂L/∂Ŵ = 2 (Ŵ − W) XXᵀ / rows`, the product in
   * the float32 matmul (the Adam steps' cost; `L` itself, which the stopping rule reads, is
   * float64) unless {@linkcode AqlmLinear.float64Gradients}.
   */
  gradients(grads: { codebooks: Float64Array; scales: Float64Array }): void {
    const { rows, width } = this;
    const { codebooks: M, groupSize: g } = this.scheme;
    const { raw, delta } = this.#delta();
    let prod: Float32Array | Float64Array;
    if (this.float64Gradients) {
      prod = new Float64Array(rows * width);
      for (let r = 0; r < rows; r++) {
        const out = prod.subarray(r * width, (r + 1) * width);
        for (let k = 0; k < width; k++) {
          const d = delta[r * width + k]!;
          if (d === 0) continue;
          const row = this.xtx.subarray(k * width, (k + 1) * width);
          for (let c = 0; c < width; c++) out[c]! += d * row[c]!;
        }
      }
    } else {
      prod = new Float32Array(rows * width);
      this.#xtx32 ??= dense(width, width, Float32Array.from(this.xtx));
      wasmMatmul(prod, Float32Array.from(delta), this.#xtx32);
    }
    grads.codebooks.fill(0);
    for (let r = 0; r < rows; r++) {
      let gs = 0;
      for (let c = 0; c < width; c++) gs += prod[r * width + c]! * raw[r * width + c]!;
      grads.scales[r] = (2 / rows) * gs;
      const f = (2 / rows) * this.scales[r]!;
      for (let j = 0; j < this.groups; j++) {
        const p = r * this.groups + j;
        for (let m = 0; m < M; m++) {
          const at = (m * this.size + this.codes[p * M + m]!) * g;
          for (let i = 0; i < g; i++) grads.codebooks[at + i]! += f * prod[p * g + i]!;
        }
      }
    }
  }

  /** One beam search over the codes (module notes), input groups and codebooks in `random`'s order. */
  beamSearch(beamSize: number, random: () => number): void {
    const { rows, width, groups, size } = this;
    const { codebooks: M, groupSize: g } = this.scheme;
    const order = shuffledIndices(groups, random).map((j) => ({
      j,
      books: shuffledIndices(M, random),
    }));
    // c_kᵀ XXᵀ[slice, slice] c_k of every codeword, for each input group.
    const norms = new Float64Array(groups * M * size);
    for (let j = 0; j < groups; j++) {
      for (let m = 0; m < M; m++) {
        for (let k = 0; k < size; k++) {
          const at = (m * size + k) * g;
          let s = 0;
          for (let a = 0; a < g; a++) {
            for (let b = 0; b < g; b++) {
              s += this.codebooks[at + a]! * this.xtx[(j * g + a) * width + j * g + b]! *
                this.codebooks[at + b]!;
            }
          }
          norms[(j * M + m) * size + k] = s;
        }
      }
    }
    const raw = this.raw();
    const perRow = groups * M;
    const v = new Float64Array(g);
    const bestLoss = new Float64Array(beamSize);
    const bestH = new Int32Array(beamSize);
    const bestK = new Int32Array(beamSize);
    for (let r = 0; r < rows; r++) {
      const s = this.scales[r]!;
      const ref = this.w.subarray(r * width, (r + 1) * width);
      const first = raw.slice(r * width, (r + 1) * width).map((v) => v * s);
      let beam = [{
        codes: this.codes.slice(r * perRow, (r + 1) * perRow),
        weights: first,
        loss: rowLoss(first.map((v, c) => v - ref[c]!), this.xtx, width),
      }];
      for (const { j, books } of order) {
        for (const m of books) {
          // The beam's best candidates so far, in order of loss (earlier hypothesis and code first
          // among equals).
          let kept = 0;
          for (const [h, hyp] of beam.entries()) {
            const prev = hyp.codes[j * M + m]!;
            // v = (W − Ŵ + part) · XXᵀ[:, slice]: the residual without this codeword.
            v.fill(0);
            for (let c = 0; c < width; c++) {
              let e = ref[c]! - hyp.weights[c]!;
              if (c >= j * g && c < (j + 1) * g) {
                e += s * this.codebooks[(m * size + prev) * g + c - j * g]!;
              }
              if (e === 0) continue;
              const at = c * width + j * g;
              for (let i = 0; i < g; i++) v[i]! += e * this.xtx[at + i]!;
            }
            let dotPrev = 0;
            for (let i = 0; i < g; i++) {
              dotPrev += this.codebooks[(m * size + prev) * g + i]! * v[i]!;
            }
            const base = hyp.loss + 2 * s * dotPrev - s * s * norms[(j * M + m) * size + prev]!;
            for (let k = 0; k < size; k++) {
              let dot = 0;
              const at = (m * size + k) * g;
              for (let i = 0; i < g; i++) dot += this.codebooks[at + i]! * v[i]!;
              const loss = base - 2 * s * dot + s * s * norms[(j * M + m) * size + k]!;
              if (kept === beamSize && !(loss < bestLoss[kept - 1]!)) continue;
              let p = kept < beamSize ? kept++ : kept - 1;
              for (; p > 0 && bestLoss[p - 1]! > loss; p--) {
                bestLoss[p] = bestLoss[p - 1]!;
                bestH[p] = bestH[p - 1]!;
                bestK[p] = bestK[p - 1]!;
              }
              bestLoss[p] = loss;
              bestH[p] = h;
              bestK[p] = k;
            }
          }
          beam = Array.from({ length: kept }, (_, b) => {
            const source = beam[bestH[b]!]!;
            const codes = source.codes.slice();
            codes[j * M + m] = bestK[b]!;
            const weights = source.weights.slice();
            for (let i = 0; i < g; i++) {
              let sum = 0;
              for (let q = 0; q < M; q++) {
                sum += this.codebooks[(q * size + codes[j * M + q]!) * g + i]!;
              }
              weights[j * g + i] = s * sum;
            }
            return { codes, weights, loss: bestLoss[b]! };
          });
        }
      }
      this.codes.set(beam[0]!.codes, r * perRow);
    }
  }
}

/** `d XXᵀ dᵀ` of one row `d`. */
function rowLoss(d: Float64Array, xtx: Float64Array, width: number): number {
  let loss = 0;
  for (let a = 0; a < width; a++) {
    const da = d[a]!;
    if (da === 0) continue;
    let s = 0;
    for (let b = 0; b < width; b++) s += xtx[a * width + b]! * d[b]!;
    loss += da * s;
  }
  return loss;
}

/** `w` (`rows × cols`) and `xtx` (`cols × cols`) zero padded to `width` columns. */
function padded(
  w: Float64Array,
  xtx: Float64Array,
  rows: number,
  cols: number,
  width: number,
): { w: Float64Array; xtx: Float64Array } {
  if (width === cols) return { w, xtx };
  const pw = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) pw.set(w.subarray(r * cols, (r + 1) * cols), r * width);
  const px = new Float64Array(width * width);
  for (let c = 0; c < cols; c++) px.set(xtx.subarray(c * cols, (c + 1) * cols), c * width);
  return { w: pw, xtx: px };
}

/**
 * AQLM of one `rows × cols` weight matrix `w` given `XXᵀ` (`cols × cols`, the mean over tokens)
 * into `scheme` (the reference's `AQEngine.quantize`); `random` draws the k-means start and the
 * beam search orders.
 */
export function aqlmQuantize(
  w: Float64Array,
  xtx: Float64Array,
  rows: number,
  cols: number,
  scheme: AqlmScheme,
  settings: AqlmSettings,
  random: () => number,
): AqlmResult {
  const init = aqlmInit(w, rows, cols, scheme, settings.initMaxIter, random);
  const linear = new AqlmLinear(
    scheme,
    rows,
    cols,
    w,
    xtx,
    init.codes,
    init.codebooks,
    init.scales,
  );
  linear.float64Gradients = settings.float64Gradients === true;
  const grads = {
    codebooks: new Float64Array(init.codebooks.length),
    scales: new Float64Array(rows),
  };
  const optCodebooks = new AmsGrad(init.codebooks.length, settings.lr);
  const optScales = new AmsGrad(rows, settings.lr);
  const losses: number[] = [];
  let best = Infinity;
  let epochs = 0;
  const tolerance = settings.relativeMseTolerance;
  for (let epoch = 0; epoch < settings.maxEpochs; epoch++) {
    let stop = false;
    for (let step = 0; step < settings.stepsPerEpoch; step++) {
      if (step === 0) {
        const loss = linear.loss();
        if (!Number.isFinite(loss)) throw new AqlmOptionsError(`AQLM loss is ${loss}`);
        losses.push(loss);
        if (tolerance !== null && loss / best > 1 - tolerance) {
          stop = true;
          break;
        }
        best = Math.min(best, loss);
      }
      linear.gradients(grads);
      optCodebooks.step(linear.codebooks, grads.codebooks);
      optScales.step(linear.scales, grads.scales);
    }
    if (stop) break;
    linear.beamSearch(settings.beamSize, random);
    epochs++;
  }
  if (losses.length === epochs) losses.push(linear.loss());
  const parts = {
    scheme,
    rows,
    cols,
    codes: linear.codes,
    codebooks: linear.codebooks,
    scales: linear.scales,
  };
  return { matrix: buildAqlmMatrix(parts), parts, losses, epochs };
}

/** The AQLM scheme a suite format stores, or why it is none. */
function schemeOf(format: FormatSpec): AqlmScheme | string {
  const element = elementFormats.get(format.weights);
  if (element.kind !== "coded") {
    return `method "aqlm" quantizes into aqlm_<M>x<B> formats; format "${format.id}" is ` +
      `${format.weights}`;
  }
  const reason = element.unsupported(format);
  if (reason !== undefined) return reason;
  return parseAqlmCodec(element.rowCodec(format).name) ??
    `method "aqlm" quantizes into aqlm_<M>x<B> formats; format "${format.id}" is ` +
      `${format.weights}`;
}

function settingsOf(
  options: Record<string, unknown>,
): AqlmSettings & { valSize: number; finetune?: AqlmFinetuneSettings & { earlyStop: number } } {
  const o = { ...AQLM_OPTIONS, ...options };
  const int = (name: keyof typeof AQLM_OPTIONS, min: number) => {
    const v = o[name];
    if (!(typeof v === "number" && Number.isInteger(v) && v >= min)) {
      throw new AqlmOptionsError(`AQLM option ${name} must be an integer ≥ ${min}, got ${v}`);
    }
    return v;
  };
  const precision = o.gradient_precision;
  if (precision !== "float32" && precision !== "float64") {
    throw new AqlmOptionsError(
      `AQLM option gradient_precision must be "float32" or "float64", got ${
        JSON.stringify(precision)
      }`,
    );
  }
  const tol = o.relative_mse_tolerance;
  if (tol !== null && !(typeof tol === "number" && tol >= 0 && tol < 1)) {
    throw new AqlmOptionsError(
      `AQLM option relative_mse_tolerance must be null or in [0, 1), got ${tol}`,
    );
  }
  const positive = (name: "lr" | "finetune_lr") => {
    const v = o[name];
    if (!(typeof v === "number" && v > 0)) {
      throw new AqlmOptionsError(`AQLM option ${name} must be positive, got ${v}`);
    }
    return v;
  };
  const beta = (name: "finetune_adam_beta1" | "finetune_adam_beta2") => {
    const v = o[name];
    if (!(typeof v === "number" && v >= 0 && v < 1)) {
      throw new AqlmOptionsError(`AQLM option ${name} must be in [0, 1), got ${v}`);
    }
    return v;
  };
  if (typeof o.finetune !== "boolean") {
    throw new AqlmOptionsError(`AQLM option finetune must be true or false, got ${o.finetune}`);
  }
  const finetune = {
    maxEpochs: int("finetune_max_epochs", 0),
    lr: positive("finetune_lr"),
    batchSize: int("finetune_batch_size", 1),
    beta1: beta("finetune_adam_beta1"),
    beta2: beta("finetune_adam_beta2"),
    earlyStop: int("finetune_early_stop", 1),
  };
  return {
    ...(o.finetune && { finetune }),
    beamSize: int("beam_size", 1),
    lr: positive("lr"),
    maxEpochs: int("max_epochs", 0),
    stepsPerEpoch: int("steps_per_epoch", 1),
    relativeMseTolerance: tol,
    initMaxIter: int("init_max_iter", 1),
    float64Gradients: precision === "float64",
    valSize: int("val_size", 0),
  };
}

/**
 * The calibration windows split as the reference's `val_size` does: `size` drawn at random are
 * held out (quantized through, never trained on); the others keep their order.
 */
function heldOut(
  windows: number[][],
  size: number,
  seed: number,
): { train: number[][]; valid: number[][] } {
  if (size === 0) return { train: windows, valid: [] };
  if (size >= windows.length) {
    throw new AqlmOptionsError(
      `AQLM option val_size ${size} leaves none of the ${windows.length} calibration windows`,
    );
  }
  const held = new Set(
    shuffledIndices(windows.length, seededRandom(seed, "aqlm/val_size")).slice(0, size),
  );
  return {
    train: windows.filter((_, i) => !held.has(i)),
    valid: windows.filter((_, i) => held.has(i)),
  };
}

/** `XXᵀ` = the mean of `xxᵀ` over every token of `xs`, accumulated in float64. */
export function meanGram(xs: Float32Array[], cols: number): Float64Array {
  const h = new Float64Array(cols * cols);
  let tokens = 0;
  for (const x of xs) {
    for (let t = 0; t < x.length / cols; t++, tokens++) {
      const row = x.subarray(t * cols, (t + 1) * cols);
      for (let a = 0; a < cols; a++) {
        const xa = row[a]!;
        if (xa === 0) continue;
        for (let b = a; b < cols; b++) h[a * cols + b]! += xa * row[b]!;
      }
    }
  }
  for (let a = 0; a < cols; a++) {
    for (let b = a; b < cols; b++) {
      h[a * cols + b]! /= tokens;
      h[b * cols + a] = h[a * cols + b]!;
    }
  }
  return h;
}

/** AQLM over a whole model (see the module notes). */
async function quantizeModel(
  model: LlamaModel,
  format: FormatSpec,
  options: Record<string, unknown>,
  ctx: MethodContext,
): Promise<LlamaModel> {
  const scheme = schemeOf(format);
  if (typeof scheme === "string") throw new AqlmOptionsError(scheme);
  const settings = settingsOf(options);
  const calibration = resolveCalibration("aqlm", options.calibration, ctx, model.config.maxSeqLen);
  const { train, valid } = heldOut(
    await calibrationWindows(model, calibration, ctx.seed),
    settings.valSize,
    ctx.seed,
  );
  const meter = new MemoryMeter();
  // The float parts of the current layer's linears, for fine-tuning.
  const parts: Partial<Record<LinearName, AqlmFloatParts>> = {};
  const finetune = settings.finetune;
  // The held-out windows' hidden states at the current layer's input.
  let validHidden = embed(model, valid);
  meter.hold(validHidden);
  const layers = await quantizeLayers(
    model,
    {
      kind: "groups",
      sequential: options.true_sequential === true,
      quantizeGroup({ names }, inputs, { index, original }) {
        const xtx = meanGram(inputs!, original[names[0]!].cols);
        const held = meter.hold(xtx);
        const quantized: Partial<Record<LinearName, Matrix>> = {};
        for (const name of names) {
          const m = original[name];
          const random = seededRandom(ctx.seed, `aqlm/${index}/${name}`);
          const result = aqlmQuantize(
            decodeMatrix(m),
            xtx,
            m.rows,
            m.cols,
            scheme,
            settings,
            random,
          );
          quantized[name] = result.matrix;
          if (finetune) parts[name] = result.parts;
        }
        meter.release(held);
        return quantized;
      },
      ...(finetune && {
        finishLayer(weights, { inputs, targets }, { index, original, block: run }) {
          const block = new AqlmBlock(
            model.config,
            weights,
            parts as Record<LinearName, AqlmFloatParts>,
          );
          const random = seededRandom(ctx.seed, `aqlm/${index}/finetune`);
          // The held-out windows' reference: the float block (the reference's `val_outs`).
          const validation = valid.length > 0
            ? {
              inputs: validHidden,
              targets: validHidden.map((x) => run.forward(original, x)),
              earlyStop: finetune.earlyStop,
            }
            : undefined;
          const mse = (v: number) => v.toExponential(4);
          aqlmFinetune(
            block,
            inputs,
            targets,
            finetune,
            random,
            (epoch, train, held) =>
              console.error(
                `aqlm: layer ${index} fine-tuning epoch ${epoch}: block MSE ${mse(train)}` +
                  (held === undefined ? "" : `, held-out ${mse(held)}`),
              ),
            validation,
          );
          const finished = block.weights();
          validHidden = validHidden.map((x) => run.forward(finished, x));
          return finished;
        },
      }),
    },
    train,
    meter,
  );
  ctx.record?.({ quantize_peak_bytes: meter.peak });
  return withRuntime({ ...model, weights: { ...model.weights, layers } }, format);
}

/** AQLM: additive codebooks fitted to the layer's inputs. */
export const aqlm: Method = {
  name: "aqlm",
  description: "AQLM (additive codebooks: k-means init, beam search over codes, Adam on " +
    "codebooks and scales; optional block-wise fine-tuning) into aqlm_<M>x<B> formats",
  options: AQLM_OPTIONS,
  checkOptions: (options) => void settingsOf(options),
  unsupported(format) {
    const scheme = schemeOf(format);
    return typeof scheme === "string" ? scheme : undefined;
  },
  quantize: quantizeModel,
};
