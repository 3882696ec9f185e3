/**
 * VPTQ (Liu et al., 2024), as microsoft/VPTQ's quantizer runs it (`vptq.py` `fast_vector_quant`
 * and `vptq`, `quantizer.py` `NPVectorQuantizer`), into the `vptq` format (`vptq-v<v>-k<k>-<r>`,
 * `kernels/formats/vptq.ts`):
 *
 * - Hessians `H = 2/N · Σ xxᵀ` of every linear's input are taken from the float model (the
 *   reference reads Hessians collected offline on the unquantized model), layer by layer.
 * - `enable_norm`: each input column is normalised by its mean and standard deviation over the
 *   output rows (stored, half precision, and applied back on decoding).
 * - The k-means weights are `diag H` per column, taken before dead inputs (`H_ii = 0`) get
 *   `H_ii = 1` and zero weights; `enable_perm` orders the columns by decreasing `diag H`.
 * - `npercent` % of the columns (the first, after any permutation) are outliers: kept in half
 *   precision, unquantized, as the reference's `-1` outlier codebook keeps them.
 * - Vectors are `v` consecutive output rows of one input column (the reference's transposed
 *   mode); the codebook is the weighted k-means (weight of a vector: its column's `H_ii`) of the
 *   matrix's vectors, random initialisation drawn with the suite seed, `kiter` rounds, `ktol`.
 * - Then GPTQ's column loop (`damp · mean(diag H)` on the diagonal, `U` = upper Cholesky factor
 *   of `H⁻¹`, blocks of `block_size` columns with lazy updates): each column's vectors take
 *   their nearest centroid and the column's error `(w − q)/U_ii` feeds the later columns.
 * - With `r` residual centroids: the errors the first pass left (updated weight − code, column
 *   by column) are clustered the same way into the residual codebook, and a second pass from the
 *   original weights codes each vector with its nearest centroid, then the nearest residual
 *   centroid to what is left.
 *
 * Centroids, outliers and norms are rounded to half precision as soon as they are computed (the
 * release stores them so), before the passes use them, so decoding gives the passes' values.
 * One codebook per matrix (the reference's `group_num` 1).
 *
 * @module
 */
import type { Method, MethodContext } from "./method.ts";
import type { LayerWeights, LlamaModel, Matrix } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { seededRandom } from "../../core/random.ts";
import { elementFormats, FormatSettingsError } from "../../kernels/formats/registry.ts";
import { nearestCentroid, weightedKmeans } from "../../kernels/formats/kmeans.ts";
import {
  buildVptq,
  parseVptqName,
  roundHalf,
  VPTQ_NAME,
  type VptqConfig,
} from "../../kernels/formats/vptq.ts";
import { columnVectors } from "../../kernels/formats/vptq_format.ts";
import { cholesky, choleskyInverse, hessian, upperCholesky } from "./linalg.ts";
import {
  calibrationWindows,
  matrixBuffers,
  MemoryMeter,
  resolveCalibration,
} from "./calibration.ts";
import { quantizeLayers } from "./sequential.ts";
import { decodeMatrix } from "./gptq.ts";
import { withRuntime } from "./runtime.ts";

/** Options and their defaults: the reference's (`QuantizationArguments`, `run_vptq.py`). */
export const VPTQ_OPTIONS = {
  calibration: { dataset: "", samples: 128, seq_len: 2048 },
  damp: 0.01,
  block_size: 128,
  kiter: 100,
  ktol: 1e-5,
  kmeans_mode: "hessian",
  npercent: 0,
  enable_perm: false,
  enable_norm: false,
};

/** Thrown for VPTQ options that cannot work. */
export class VptqOptionsError extends Error {
  override name = "VptqOptionsError";
}

/** VPTQ settings for one linear. */
export interface VptqSettings {
  damp: number;
  blockSize: number;
  kiter: number;
  ktol: number;
  /** Whether k-means weighs vectors by `diag H` (`kmeans_mode: hessian`). */
  hessianWeights: boolean;
  npercent: number;
  perm: boolean;
  norm: boolean;
}

/** The result of quantizing one weight matrix. */
export interface VptqResult {
  matrix: Matrix;
  /** The decoded weights, `rows × cols`, in the matrix's own column order. */
  q: Float64Array;
}

function settingsOf(options: Record<string, unknown>): VptqSettings {
  const o = { ...VPTQ_OPTIONS, ...options };
  const [damp, blockSize, kiter, ktol, npercent] = [
    Number(o.damp),
    Number(o.block_size),
    Number(o.kiter),
    Number(o.ktol),
    Number(o.npercent),
  ];
  if (
    !(damp >= 0) || !(Number.isInteger(blockSize) && blockSize >= 1) ||
    !(Number.isInteger(kiter) && kiter >= 1) || !(ktol >= 0) || !(npercent >= 0 && npercent < 100)
  ) {
    throw new VptqOptionsError(
      `VPTQ needs damp ≥ 0, integer block_size and kiter ≥ 1, ktol ≥ 0 and npercent in ` +
        `[0, 100), got ${o.damp}, ${o.block_size}, ${o.kiter}, ${o.ktol} and ${o.npercent}`,
    );
  }
  if (o.kmeans_mode !== "hessian" && o.kmeans_mode !== "") {
    throw new VptqOptionsError(`VPTQ kmeans_mode is "hessian" or "", got "${o.kmeans_mode}"`);
  }
  return {
    damp,
    blockSize,
    kiter,
    ktol,
    hessianWeights: o.kmeans_mode === "hessian",
    npercent,
    perm: o.enable_perm === true,
    norm: o.enable_norm === true,
  };
}

/** Weighted k-means of the column vectors of columns `[c0, cols)` of `w`; centroids in half. */
function codebook(
  w: Float64Array,
  rows: number,
  cols: number,
  c0: number,
  k: number,
  v: number,
  colWeights: Float64Array | undefined,
  settings: VptqSettings,
  random: () => number,
): { centroids: Float64Array; count: number } {
  const n = cols - c0;
  const part = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < n; c++) part[r * n + c] = w[r * cols + c0 + c]!;
  }
  const groups = Math.ceil(rows / v);
  const vectors = columnVectors(part, rows, n, v);
  let weights: Float64Array | undefined;
  if (colWeights) {
    // The reference averages the per-weight Hessian weights over a vector, padding included.
    weights = new Float64Array(n * groups);
    for (let c = 0; c < n; c++) {
      for (let g = 0; g < groups; g++) {
        const lanes = Math.min(v, rows - g * v);
        weights[c * groups + g] = colWeights[c0 + c]! * lanes / v;
      }
    }
  }
  const fit = weightedKmeans(vectors, n * groups, v, k, weights, {
    iterations: settings.kiter,
    tol: settings.ktol,
    random,
  });
  return { centroids: fit.centroids.map(roundHalf), count: fit.count };
}

/** A codebook and the codes chosen from it, column by column. */
interface Book {
  centroids: Float64Array;
  count: number;
  indices: Int32Array;
}

/**
 * One pass of the column loop over `w` (modified): columns before `o` are kept (rounded to
 * half), the others coded with `main` (and `res` when given); returns the codes and, per
 * column, the updated weight minus its code (the first pass's residual data).
 */
function pass(
  w: Float64Array,
  hinv: Float64Array,
  rows: number,
  cols: number,
  o: number,
  v: number,
  blockSize: number,
  main: Book,
  res: Book | undefined,
): { q: Float64Array; left: Float64Array } {
  const groups = Math.ceil(rows / v);
  const q = new Float64Array(rows * cols);
  const left = new Float64Array(rows * cols);
  const vec = new Float64Array(groups * v);
  const rest = new Float64Array(v);
  for (let i1 = 0; i1 < cols; i1 += blockSize) {
    const i2 = Math.min(i1 + blockSize, cols);
    const count = i2 - i1;
    const err = new Float64Array(rows * count);
    for (let i = 0; i < count; i++) {
      const col = i1 + i;
      if (col < o) {
        for (let r = 0; r < rows; r++) q[r * cols + col] = roundHalf(w[r * cols + col]!);
      } else {
        vec.fill(0);
        for (let r = 0; r < rows; r++) vec[r] = w[r * cols + col]!;
        for (let g = 0; g < groups; g++) {
          const c = nearestCentroid(vec, g * v, main.centroids, main.count, v);
          main.indices[(col - o) * groups + g] = c;
          for (let j = 0; j < v; j++) rest[j] = vec[g * v + j]! - main.centroids[c * v + j]!;
          let rc = -1;
          if (res) {
            rc = nearestCentroid(rest, 0, res.centroids, res.count, v);
            res.indices[(col - o) * groups + g] = rc;
          }
          for (let j = 0; j < v && g * v + j < rows; j++) {
            const value = main.centroids[c * v + j]! + (res ? res.centroids[rc * v + j]! : 0);
            q[(g * v + j) * cols + col] = value;
          }
        }
      }
      const d = hinv[col * cols + col]!;
      for (let r = 0; r < rows; r++) {
        const wv = w[r * cols + col]!;
        const e = (wv - q[r * cols + col]!) / d;
        left[r * cols + col] = wv - q[r * cols + col]!;
        err[r * count + i] = e;
        for (let j = i + 1; j < count; j++) w[r * cols + i1 + j]! -= e * hinv[col * cols + i1 + j]!;
      }
    }
    for (let r = 0; r < rows; r++) {
      for (let j = i2; j < cols; j++) {
        let s = 0;
        for (let i = 0; i < count; i++) s += err[r * count + i]! * hinv[(i1 + i) * cols + j]!;
        w[r * cols + j]! -= s;
      }
    }
  }
  return { q, left };
}

/**
 * VPTQ of one `rows × cols` weight matrix `w0` given the Hessian `h0` of its input (see the
 * module notes); `random` draws the k-means initialisations.
 */
export function vptqQuantize(
  w0: Float64Array,
  h0: Float64Array,
  rows: number,
  cols: number,
  config: VptqConfig,
  settings: VptqSettings,
  random: () => number,
): VptqResult {
  const v = config.vectorLen;
  let w = w0.slice();
  let h = h0.slice();
  let normScale: Float64Array | undefined;
  let normBias: Float64Array | undefined;
  if (settings.norm) {
    // torch.std (unbiased) and mean over the output rows, per input column, kept in half.
    normScale = new Float64Array(cols);
    normBias = new Float64Array(cols);
    for (let c = 0; c < cols; c++) {
      let mean = 0;
      for (let r = 0; r < rows; r++) mean += w[r * cols + c]!;
      mean /= rows;
      let ss = 0;
      for (let r = 0; r < rows; r++) ss += (w[r * cols + c]! - mean) ** 2;
      const std = Math.sqrt(ss / Math.max(1, rows - 1));
      normBias[c] = roundHalf(mean);
      normScale[c] = roundHalf(std) || 1;
      for (let r = 0; r < rows; r++) {
        w[r * cols + c] = (w[r * cols + c]! - normBias[c]!) / normScale[c]!;
      }
    }
  }
  let colWeights = settings.hessianWeights
    ? Float64Array.from({ length: cols }, (_, c) => h[c * cols + c]!)
    : undefined;
  for (let c = 0; c < cols; c++) {
    if (h[c * cols + c] !== 0) continue;
    h[c * cols + c] = 1;
    for (let r = 0; r < rows; r++) w[r * cols + c] = 0;
  }
  let perm: number[] | undefined;
  if (settings.perm) {
    const order = Array.from({ length: cols }, (_, i) => i);
    order.sort((a, b) => h[b * cols + b]! - h[a * cols + a]! || a - b);
    perm = order;
    const pw = new Float64Array(rows * cols);
    const ph = new Float64Array(cols * cols);
    for (let j = 0; j < cols; j++) {
      for (let r = 0; r < rows; r++) pw[r * cols + j] = w[r * cols + order[j]!]!;
      for (let i = 0; i < cols; i++) ph[i * cols + j] = h[order[i]! * cols + order[j]!]!;
    }
    [w, h] = [pw, ph];
    if (colWeights) colWeights = Float64Array.from(order, (c) => colWeights![c]!);
    if (normScale) {
      normScale = Float64Array.from(order, (c) => normScale![c]!);
      normBias = Float64Array.from(order, (c) => normBias![c]!);
    }
  }
  const o = Math.ceil((settings.npercent / 100) * cols);
  let mean = 0;
  for (let i = 0; i < cols; i++) mean += h[i * cols + i]!;
  const damp = settings.damp * (mean / cols);
  for (let i = 0; i < cols; i++) h[i * cols + i]! += damp;
  const hinv = upperCholesky(choleskyInverse(cholesky(h, cols), cols), cols);

  const groups = Math.ceil(rows / v);
  const indices = () => new Int32Array((cols - o) * groups);
  const fit = codebook(w, rows, cols, o, config.centroids, v, colWeights, settings, random);
  const main: Book = { ...fit, indices: indices() };
  let result = pass(w.slice(), hinv, rows, cols, o, v, settings.blockSize, main, undefined);
  let res: Book | undefined;
  if (config.resCentroids > 0) {
    const rfit = codebook(
      result.left,
      rows,
      cols,
      o,
      config.resCentroids,
      v,
      colWeights,
      settings,
      random,
    );
    res = { ...rfit, indices: indices() };
    result = pass(w.slice(), hinv, rows, cols, o, v, settings.blockSize, main, res);
  }
  let outliers: Float64Array | undefined;
  if (o > 0) {
    outliers = new Float64Array(rows * o);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < o; j++) outliers[r * o + j] = result.q[r * cols + j]!;
    }
  }
  const matrix = buildVptq({
    rows,
    cols,
    config,
    centroids: main.centroids.subarray(0, main.count * v),
    indices: main.indices,
    ...(res
      ? { resCentroids: res.centroids.subarray(0, res.count * v), resIndices: res.indices }
      : {}),
    ...(o > 0 ? { outlierCols: o, outliers } : {}),
    ...(perm ? { perm } : {}),
    ...(normScale ? { normScale, normBias } : {}),
  });
  return { matrix, q: decodeMatrix(matrix) };
}

/** Why `format` is no VPTQ format, or undefined when it is. */
function unsupported(format: FormatSpec): string | undefined {
  if (!VPTQ_NAME.test(format.weights)) {
    return `VPTQ quantizes into vptq-v<v>-k<k>-<r> formats, not "${format.weights}"`;
  }
  return elementFormats.get(format.weights).unsupported(format);
}

/** VPTQ over a whole model (see the module notes). */
async function quantizeModel(
  model: LlamaModel,
  format: FormatSpec,
  options: Record<string, unknown>,
  ctx: MethodContext,
): Promise<LlamaModel> {
  const reason = unsupported(format);
  if (reason !== undefined) throw new FormatSettingsError(reason);
  const config = parseVptqName(format.weights);
  const settings = settingsOf(options);
  const calibration = resolveCalibration("vptq", options.calibration, ctx, model.config.maxSeqLen);
  const windows = await calibrationWindows(model, calibration, ctx.seed);
  const random = seededRandom(ctx.seed, "vptq-kmeans");
  const meter = new MemoryMeter();
  const layers = await quantizeLayers(
    model,
    {
      kind: "layer",
      quantizeLayer(captures, { original, groups }) {
        const layer: LayerWeights = { ...original };
        for (const { names, input } of groups) {
          const h = hessian(captures.get(input)!, original[names[0]!].cols);
          const held = meter.hold(h);
          for (const name of names) {
            const m = original[name];
            const q = vptqQuantize(decodeMatrix(m), h, m.rows, m.cols, config, settings, random);
            meter.hold(matrixBuffers(q.matrix));
            layer[name] = q.matrix;
          }
          meter.release(held);
        }
        return layer;
      },
    },
    windows,
    meter,
  );
  ctx.record?.({ quantize_peak_bytes: meter.peak });
  return withRuntime({ ...model, weights: { ...model.weights, layers } }, format);
}

/** VPTQ: Hessian-weighted vector codebooks with GPTQ-style column error feedback. */
export const vptq: Method = {
  name: "vptq",
  description: "VPTQ (vector codebooks, Hessian-weighted k-means, residual codebook, outliers, " +
    "GPTQ-style column feedback) into vptq-v<v>-k<k>-<r> formats",
  options: VPTQ_OPTIONS,
  unsupported,
  checkOptions: (options) => void settingsOf(options),
  quantize: quantizeModel,
};
