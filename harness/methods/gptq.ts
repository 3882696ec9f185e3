/**
 * GPTQ (Frantar et al., 2023), as the reference implementation (IST-DASLab `gptq.py`,
 * `quant.py`, `llama.py`) runs it, into any format with a {@linkcode GroupGrid}: integer
 * (2–8 bits, symmetric or not, per channel, group or tensor), scaled FP8/FP6/FP4, MX and NVFP4.
 *
 * The layers are quantized by the sequential driver (`sequential.ts`), group by group of the
 * block's linears sharing an input (`[wq, wk, wv]`, `[wo]`, `[w1, w3]`, `[w2]` for Llama, the
 * reference's `--true-sequential` groups): with `true_sequential`, the default, each group's
 * Hessian `H = 2/N · Σ xxᵀ` (N calibration windows) is accumulated from inputs computed with the
 * block's already-quantized linears, so later linears see earlier errors; without it, all take
 * their inputs from the float block. The block's quantized output becomes the next block's
 * input.
 *
 * For each linear (`fasterquant`): per-channel/per-tensor parameters are fitted to the weights
 * first; dead inputs (`H_ii = 0`) get `H_ii = 1` and zero weights; `act_order` permutes columns
 * by decreasing `H_ii` (stable order for ties); `damp · mean(diag H)` is added to the diagonal;
 * `U` = the upper Cholesky factor of `H⁻¹`; columns are quantized one at a time in blocks of
 * `block_size`, each error `(w − q)/U_ii` spread over the block's later columns at once and over
 * the remaining columns at the block's end (lazy batch updates). Group parameters: with
 * `static_groups` all groups are fitted to the weights before any update; otherwise a group's
 * parameters are fitted when its first column is reached, from the weights as the lazy updates
 * have left them — the reference reads the outer `W`, which lacks the updates of the current
 * block's earlier columns, and so does this port. `act_order` with groups needs `static_groups`
 * (the formats store contiguous groups, not GPTQ's `g_idx`).
 *
 * @module
 */
import type { Method, MethodContext } from "./method.ts";
import type { LinearName, LlamaModel, Matrix } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { decodeRow } from "../../kernels/formats/matrix.ts";
import { addGram, cholesky, choleskyInverse, upperCholesky } from "./linalg.ts";
import { gridUnsupported, type GroupGrid, groupGrid } from "./grid.ts";
import {
  calibrationWindows,
  matrixBuffers,
  MemoryMeter,
  resolveCalibration,
} from "./calibration.ts";
import { quantizeLayers } from "./sequential.ts";
import { withRuntime } from "./runtime.ts";

/** Options and their defaults: the reference's (`llama.py` arguments, `fasterquant`). */
export const GPTQ_OPTIONS = {
  calibration: { dataset: "", samples: 128, seq_len: 2048 },
  damp: 0.01,
  block_size: 128,
  act_order: false,
  static_groups: false,
  true_sequential: true,
};

/** Thrown for GPTQ options that cannot work together. */
export class GptqOptionsError extends Error {
  override name = "GptqOptionsError";
}

/** GPTQ settings for one linear. */
export interface GptqSettings {
  damp: number;
  blockSize: number;
  actOrder: boolean;
  staticGroups: boolean;
}

/** The result of quantizing one weight matrix. */
export interface GptqResult {
  matrix: Matrix;
  /** The quantized weights (decoded), `rows × cols`. */
  q: Float64Array;
  /** Σ (w − q)² / U_ii² / 2, the reference's reported error. */
  loss: number;
}

/** Decodes any matrix to float64. */
export function decodeMatrix(m: Matrix): Float64Array {
  const out = new Float64Array(m.rows * m.cols);
  const row = new Float32Array(m.cols);
  for (let r = 0; r < m.rows; r++) {
    decodeRow(m, r, row);
    out.set(row, r * m.cols);
  }
  return out;
}

/**
 * GPTQ of one `rows × cols` weight matrix `w` given the Hessian `h` (`cols × cols`, modified)
 * into the format of `grid` (`fasterquant` of the reference).
 */
export function gptqQuantize(
  w0: Float64Array,
  h: Float64Array,
  rows: number,
  cols: number,
  grid: GroupGrid,
  settings: GptqSettings,
): GptqResult {
  const w = w0.slice();
  const grouped = grid.groupSize < cols;
  if (settings.actOrder && grouped && !settings.staticGroups) {
    throw new GptqOptionsError(
      `act_order with groups of ${grid.groupSize} needs static_groups: true (the format stores ` +
        `contiguous groups; GPTQ's g_idx reordering is not representable)`,
    );
  }
  grid.init(w);
  for (let i = 0; i < cols; i++) {
    if (h[i * cols + i] !== 0) continue;
    h[i * cols + i] = 1;
    for (let r = 0; r < rows; r++) w[r * cols + i] = 0;
  }
  if (grouped && settings.staticGroups) {
    for (let c = 0; c < cols; c += grid.groupSize) {
      grid.fit(w, c, Math.min(cols, c + grid.groupSize));
    }
  }
  let perm: number[] | undefined;
  let hw = w;
  let hh = h;
  if (settings.actOrder) {
    const order = Array.from({ length: cols }, (_, i) => i);
    order.sort((a, b) => h[b * cols + b]! - h[a * cols + a]! || a - b);
    perm = order;
    hw = new Float64Array(rows * cols);
    hh = new Float64Array(cols * cols);
    for (let j = 0; j < cols; j++) {
      for (let r = 0; r < rows; r++) hw[r * cols + j] = w[r * cols + order[j]!]!;
      for (let i = 0; i < cols; i++) hh[i * cols + j] = h[order[i]! * cols + order[j]!]!;
    }
  }
  let mean = 0;
  for (let i = 0; i < cols; i++) mean += hh[i * cols + i]!;
  const damp = settings.damp * (mean / cols);
  for (let i = 0; i < cols; i++) hh[i * cols + i]! += damp;
  const hinv = upperCholesky(choleskyInverse(cholesky(hh, cols), cols), cols);

  const q = new Float64Array(rows * cols);
  let loss = 0;
  const bs = settings.blockSize;
  for (let i1 = 0; i1 < cols; i1 += bs) {
    const i2 = Math.min(i1 + bs, cols);
    const count = i2 - i1;
    const w1 = new Float64Array(rows * count);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < count; j++) w1[r * count + j] = hw[r * cols + i1 + j]!;
    }
    const err = new Float64Array(rows * count);
    for (let i = 0; i < count; i++) {
      const col = i1 + i;
      const original = perm ? perm[col]! : col;
      if (grouped && !settings.staticGroups && col % grid.groupSize === 0) {
        grid.fit(hw, col, Math.min(cols, col + grid.groupSize));
      }
      const d = hinv[col * cols + col]!;
      for (let r = 0; r < rows; r++) {
        const wv = w1[r * count + i]!;
        const qv = grid.round(r, original, wv);
        q[r * cols + original] = qv;
        loss += (wv - qv) ** 2 / d ** 2 / 2;
        const e = (wv - qv) / d;
        err[r * count + i] = e;
        for (let j = i; j < count; j++) w1[r * count + j]! -= e * hinv[col * cols + i1 + j]!;
      }
    }
    for (let r = 0; r < rows; r++) {
      for (let j = i2; j < cols; j++) {
        let s = 0;
        for (let i = 0; i < count; i++) s += err[r * count + i]! * hinv[(i1 + i) * cols + j]!;
        hw[r * cols + j]! -= s;
      }
    }
  }
  return { matrix: grid.build(), q, loss };
}

function settingsOf(options: Record<string, unknown>): GptqSettings {
  const o = { ...GPTQ_OPTIONS, ...options };
  const damp = Number(o.damp);
  const blockSize = Number(o.block_size);
  if (!(damp >= 0) || !(Number.isInteger(blockSize) && blockSize >= 1)) {
    throw new GptqOptionsError(
      `GPTQ needs damp ≥ 0 and an integer block_size ≥ 1, got ${o.damp} and ${o.block_size}`,
    );
  }
  return {
    damp,
    blockSize,
    actOrder: o.act_order === true,
    staticGroups: o.static_groups === true,
  };
}

/** `H = 2/N · Σ xxᵀ` over the captured inputs `xs` (N = windows). */
function hessian(xs: Float32Array[], cols: number): Float64Array {
  const h = new Float64Array(cols * cols);
  for (const x of xs) addGram(h, x, cols);
  for (let i = 0; i < h.length; i++) h[i]! *= 2 / xs.length;
  return h;
}

/** GPTQ over a whole model (see the module notes). */
async function quantizeModel(
  model: LlamaModel,
  format: FormatSpec,
  options: Record<string, unknown>,
  ctx: MethodContext,
): Promise<LlamaModel> {
  const settings = settingsOf(options);
  const calibration = resolveCalibration("gptq", options.calibration, ctx, model.config.maxSeqLen);
  const windows = await calibrationWindows(model, calibration, ctx.seed);
  const meter = new MemoryMeter();
  const layers = await quantizeLayers(
    model,
    {
      kind: "groups",
      sequential: options.true_sequential !== false,
      quantizeGroup({ names }, inputs, { original }) {
        // The group shares one Hessian; each linear is quantized with a copy of it.
        const h = hessian(inputs!, original[names[0]!].cols);
        const held = meter.hold(h);
        const quantized: Partial<Record<LinearName, Matrix>> = {};
        for (const name of names) {
          const m = original[name];
          const grid = groupGrid(format, m.rows, m.cols);
          const q = gptqQuantize(decodeMatrix(m), h.slice(), m.rows, m.cols, grid, settings).matrix;
          meter.hold(matrixBuffers(q));
          quantized[name] = q;
        }
        meter.release(held);
        return quantized;
      },
    },
    windows,
    meter,
  );
  ctx.record?.({ quantize_peak_bytes: meter.peak });
  return withRuntime({ ...model, weights: { ...model.weights, layers } }, format);
}

/** GPTQ: calibrated, column-by-column quantization with second-order error feedback. */
export const gptq: Method = {
  name: "gptq",
  description: "GPTQ (second-order, column by column) into int, FP8/FP4, MX and NVFP4 formats",
  options: GPTQ_OPTIONS,
  unsupported: (format) => gridUnsupported(format),
  quantize: quantizeModel,
};
