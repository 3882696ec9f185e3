/**
 * The `vptq` format module: VPTQ's vector codes with their codebooks (`vptq.ts` says how they
 * are stored), decoded row by row inside the matmul (no float copy of the matrix is kept). Its
 * element formats are named as the authors' release names its models, `vptq-v<v>-k<k>-<r>`:
 * vector length, main centroids, residual centroids (0: none). The `vptq` method
 * (`harness/methods/vptq.ts`) fits them with Hessian-weighted k-means and GPTQ-style error
 * feedback; round-to-nearest (the `rtn` method) fits plain k-means (10 Lloyd rounds, seed 0) to
 * the matrix's vectors and keeps every vector's nearest centroids. The codebooks span the whole
 * matrix, so there is no group-scale grid (GPTQ skips these formats). On WebGPU the parts are
 * uploaded as they are ({@linkcode vptqGpuPlan}) and `kernels/webgpu/vptq_wgsl.ts` decodes them
 * inside the matmul.
 *
 * @module
 */
import type { DenseMatrix, Matrix } from "../../core/model.ts";
import type { RowCodec } from "../../core/coded.ts";
import { seededRandom } from "../../core/random.ts";
import type { CodedElementFormat, FormatSettings } from "./element_format.ts";
import { checked } from "./element_format.ts";
import { asCoded, type QuantizedWeight, type WeightFormat } from "./format.ts";
import { type VptqGpuPlan, wordsOf } from "./gpu_layout.ts";
import { nearestCentroid, weightedKmeans } from "./kmeans.ts";
import {
  buildVptq,
  decodeVptqRow,
  halves,
  indexBits,
  parseVptqName,
  roundHalf,
  VPTQ_NAME,
  vptqBits,
  vptqBitsPerWeight,
  type VptqConfig,
  VptqFormatError,
} from "./vptq.ts";

/**
 * The element formats suites may name: codebooks small enough for the matrices of small models
 * (the release's `v8-k65536-256` needs matrices of millions of weights to amortise its codebook,
 * and round-to-nearest's k-means over 65536 centroids takes minutes on a 1024 × 1024 matrix).
 */
export const VPTQ_ELEMENTS: readonly string[] = [
  "vptq-v2-k16-0",
  "vptq-v2-k64-0",
  "vptq-v4-k256-0",
  "vptq-v4-k256-16",
];

/** Lloyd rounds of round-to-nearest's plain k-means. */
const RTN_ITERATIONS = 10;

/** The column vectors of a `rows × cols` float64 matrix: `(col · G + g) × v`, zero-padded. */
export function columnVectors(
  w: Float64Array,
  rows: number,
  cols: number,
  v: number,
): Float64Array {
  const groups = Math.ceil(rows / v);
  const out = new Float64Array(cols * groups * v);
  for (let c = 0; c < cols; c++) {
    for (let r = 0; r < rows; r++) {
      out[(c * groups + Math.floor(r / v)) * v + (r % v)] = w[r * cols + c]!;
    }
  }
  return out;
}

/**
 * Round-to-nearest into `config`: plain k-means of the column vectors (and of what they leave,
 * for the residual codebook), centroids rounded to half, each vector its nearest centroids.
 */
export function vqRoundToNearest(m: DenseMatrix, config: VptqConfig, seed: number): Matrix {
  const { rows, cols } = m;
  const v = config.vectorLen;
  const n = Math.ceil(rows / v) * cols;
  const vectors = columnVectors(Float64Array.from(m.data), rows, cols, v);
  const random = seededRandom(seed, "vptq-rtn");
  const options = { iterations: RTN_ITERATIONS, tol: 1e-5, random };
  const main = weightedKmeans(vectors, n, v, config.centroids, undefined, options);
  const centroids = main.centroids.map(roundHalf);
  const indices = new Int32Array(n);
  const left = vectors.slice();
  for (let i = 0; i < n; i++) {
    indices[i] = nearestCentroid(vectors, i * v, centroids, main.count, v);
    for (let j = 0; j < v; j++) left[i * v + j]! -= centroids[indices[i]! * v + j]!;
  }
  if (config.resCentroids === 0) return buildVptq({ rows, cols, config, centroids, indices });
  const res = weightedKmeans(left, n, v, config.resCentroids, undefined, options);
  const resCentroids = res.centroids.map(roundHalf);
  const resIndices = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    resIndices[i] = nearestCentroid(left, i * v, resCentroids, res.count, v);
  }
  return buildVptq({ rows, cols, config, centroids, indices, resCentroids, resIndices });
}

/**
 * A VPTQ matrix of `config` with arbitrary contents, for timing: indices uniform over the
 * codebooks, half centroids of a weight's magnitude (about 1/√cols; residual ones a quarter of
 * that), no outliers, permutation or norm (the suite names carry none).
 */
export function vptqTimingMatrix(
  config: VptqConfig,
  rows: number,
  cols: number,
  random: () => number,
): Matrix {
  const n = Math.ceil(rows / config.vectorLen) * cols;
  const magnitude = 1 / Math.sqrt(cols);
  const centroidsOf = (k: number, scale: number) =>
    Float32Array.from({ length: k * config.vectorLen }, () => (2 * random() - 1) * scale);
  const indicesOf = (k: number) => Int32Array.from({ length: n }, () => Math.floor(random() * k));
  const centroids = centroidsOf(config.centroids, magnitude);
  const indices = indicesOf(config.centroids);
  if (config.resCentroids === 0) return buildVptq({ rows, cols, config, centroids, indices });
  const resCentroids = centroidsOf(config.resCentroids, magnitude / 4);
  const resIndices = indicesOf(config.resCentroids);
  return buildVptq({ rows, cols, config, centroids, indices, resCentroids, resIndices });
}

/** The (unencodable) row codec of a VPTQ name: its name and nominal index bits. */
function nameCodec(name: string): RowCodec {
  const config = parseVptqName(name);
  const refuse = (): never => {
    throw new VptqFormatError(
      `Codec "${name}" has no row encoder: its codebooks are fitted to a whole matrix`,
    );
  };
  return {
    name,
    blockSize: config.vectorLen,
    rowBytes: () => 0,
    bitsPerWeight: () =>
      (indexBits(config.centroids) +
        (config.resCentroids > 0 ? indexBits(config.resCentroids) : 0)) / config.vectorLen,
    encodeRow: refuse,
    decodeRow: refuse,
    tensorScale: () => 1,
  };
}

/** The element format `name` (one of {@linkcode VPTQ_ELEMENTS}). */
function element(name: string): CodedElementFormat {
  const config = parseVptqName(name);
  const codec = nameCodec(name);
  const format: CodedElementFormat = {
    name,
    kind: "coded",
    codec: name,
    block: config.vectorLen,
    bits: codec.bitsPerWeight(0),
    description: `VPTQ vectors of ${config.vectorLen} with ${config.centroids} centroids` +
      (config.resCentroids > 0 ? ` and ${config.resCentroids} residual centroids` : ""),
    rowCodec: () => codec,
    unsupported(settings: FormatSettings) {
      if (settings.group !== 0 && settings.group !== config.vectorLen) {
        return `format "${name}" has one codebook per matrix over vectors of ` +
          `${config.vectorLen}; group ${settings.group} does not apply (omit it)`;
      }
      if (settings.options.scale_dtype !== undefined) {
        return `format "${name}" stores half codebooks; scale_dtype does not apply`;
      }
      return undefined;
    },
    bitsPerWeight: (_settings, rows, cols) => vptqBitsPerWeight(config, rows, cols),
    quantize: (settings, m) => checked(format, settings, () => vqRoundToNearest(m, config, 0)),
    timingMatrix: (settings, rows, cols, random = seededRandom(0, `vptq timing ${rows}x${cols}`)) =>
      checked(format, settings, () => vptqTimingMatrix(config, rows, cols, random)),
  };
  return format;
}

/** The WebGPU plan of a VPTQ matrix (see `VptqGpuPlan`). */
export function vptqGpuPlan(m: QuantizedWeight): VptqGpuPlan {
  const c = asCoded("vptq", m);
  const config = parseVptqName(c.codec);
  const s = c.sides ?? {};
  const main = wordsOf(s.indices as Uint8Array);
  const res = config.resCentroids > 0 ? wordsOf(s.res_indices as Uint8Array) : new Uint32Array(0);
  const indices = new Uint32Array(main.length + res.length + 1);
  indices.set(main);
  indices.set(res, main.length);
  const centroids = halves(s.centroids!);
  const resCentroids = config.resCentroids > 0 ? halves(s.res_centroids!) : new Float32Array(0);
  const codebook = new Float32Array(centroids.length + resCentroids.length);
  codebook.set(centroids);
  codebook.set(resCentroids, centroids.length);
  const outliers = s.outliers ? halves(s.outliers) : new Float32Array(0);
  const perm = s.perm as Uint16Array | undefined;
  return {
    kind: "vptq",
    ...config,
    outlierCols: outliers.length / c.rows,
    indices,
    resOffset: main.length,
    codebook,
    outliers: outliers.length ? outliers : new Float32Array(1),
    perm: Uint32Array.from({ length: c.cols }, (_, j) => perm ? perm[j]! : j),
    normScale: s.norm_scale ? halves(s.norm_scale) : new Float32Array(c.cols).fill(1),
    normBias: s.norm_bias ? halves(s.norm_bias) : new Float32Array(c.cols),
    norm: s.norm_scale !== undefined,
  };
}

/** VPTQ's codebook format. */
export const VPTQ_FORMAT: WeightFormat = {
  name: "vptq",
  description: "VPTQ: column vectors as indices into half codebooks (+ residual codebook, " +
    "outlier columns, column permutation and norm)",
  codecs: [],
  elements: VPTQ_ELEMENTS.map(element),
  bounds: [],
  owns: (codec) => VPTQ_NAME.test(codec),
  decodeRow: (m, r, out) => decodeVptqRow(asCoded("vptq", m), r, out),
  bits: (m) => vptqBits(asCoded("vptq", m)),
  gpu: vptqGpuPlan,
  grid: "none",
};
