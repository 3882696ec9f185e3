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
import { gptqQuantizeWebGpu, gpuHessian } from "./gptq_webgpu.ts";
import { adapterUnavailable } from "../../kernels/webgpu/device.ts";

/** Options and their defaults: the reference's (`llama.py` arguments, `fasterquant`). */
export const GPTQ_OPTIONS = {
  calibration: { dataset: "", samples: 128, seq_len: 2048 },
  damp: 0.01,
  block_size: 128,
  act_order: false,
  static_groups: false,
  true_sequential: true,
  /** Where the Hessians and the block updates run: `cpu` (float64, the reference) or `webgpu`. */
  device: "cpu",
};

/** Values of the `device` option. */
export const GPTQ_DEVICES = ["cpu", "webgpu"] as const;

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
  /** Where the Hessians and block updates run (the option `device`; default cpu). */
  device?: (typeof GPTQ_DEVICES)[number];
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

/** What GPTQ's column loop takes from the Hessian: `U`, the upper Cholesky factor of `H⁻¹`. */
export interface GptqFactor {
  /** `U` (`cols × cols`) of the damped Hessian, columns in quantization order. */
  hinv: Float64Array;
  /** The column order (act_order), or undefined for the natural one. */
  perm?: number[];
  /** Dead inputs (`H_ii = 0`), whose weights are zeroed. */
  dead: number[];
}

/**
 * The factor of the Hessian `h` (`cols × cols`, left unchanged): dead inputs get `H_ii = 1`,
 * act_order permutes by decreasing `H_ii` (stable for ties), `damp · mean(diag H)` is added to
 * the diagonal, and `U` is the upper Cholesky factor of the inverse. It depends on `h` and the
 * settings only, so the linears of a group share it.
 */
export function gptqFactor(h0: Float64Array, cols: number, settings: GptqSettings): GptqFactor {
  const h = h0.slice();
  const dead: number[] = [];
  for (let i = 0; i < cols; i++) {
    if (h[i * cols + i] !== 0) continue;
    h[i * cols + i] = 1;
    dead.push(i);
  }
  let perm: number[] | undefined;
  let hh = h;
  if (settings.actOrder) {
    const order = Array.from({ length: cols }, (_, i) => i);
    order.sort((a, b) => h[b * cols + b]! - h[a * cols + a]! || a - b);
    perm = order;
    hh = new Float64Array(cols * cols);
    for (let j = 0; j < cols; j++) {
      for (let i = 0; i < cols; i++) hh[i * cols + j] = h[order[i]! * cols + order[j]!]!;
    }
  }
  let mean = 0;
  for (let i = 0; i < cols; i++) mean += hh[i * cols + i]!;
  const damp = settings.damp * (mean / cols);
  for (let i = 0; i < cols; i++) hh[i * cols + i]! += damp;
  const hinv = upperCholesky(choleskyInverse(cholesky(hh, cols), cols), cols);
  return { hinv, perm, dead };
}

/** Refuses act_order with free groups. */
function checkActOrder(grid: GroupGrid, cols: number, settings: GptqSettings): void {
  if (settings.actOrder && grid.groupSize < cols && !settings.staticGroups) {
    throw new GptqOptionsError(
      `act_order with groups of ${grid.groupSize} needs static_groups: true (the format stores ` +
        `contiguous groups; GPTQ's g_idx reordering is not representable)`,
    );
  }
}

/**
 * The weights `w0` (`rows × cols`) as the column loop starts on them: the grid initialised, dead
 * inputs zeroed, static groups fitted, columns in quantization order. Refuses act_order with
 * free groups.
 */
export function gptqWeights(
  w0: Float64Array,
  rows: number,
  cols: number,
  grid: GroupGrid,
  settings: GptqSettings,
  factor: GptqFactor,
): Float64Array {
  checkActOrder(grid, cols, settings);
  const w = w0.slice();
  const grouped = grid.groupSize < cols;
  grid.init(w);
  for (const i of factor.dead) for (let r = 0; r < rows; r++) w[r * cols + i] = 0;
  if (grouped && settings.staticGroups) {
    for (let c = 0; c < cols; c += grid.groupSize) {
      grid.fit(w, c, Math.min(cols, c + grid.groupSize));
    }
  }
  const order = factor.perm;
  if (!order) return w;
  const hw = new Float64Array(rows * cols);
  for (let j = 0; j < cols; j++) {
    for (let r = 0; r < rows; r++) hw[r * cols + j] = w[r * cols + order[j]!]!;
  }
  return hw;
}

/**
 * The end of the columns a block `[i1, i2)` reads from `hw` before its own updates: its columns
 * and those of the groups whose parameters are fitted in it.
 */
export function gptqBlockReach(
  i1: number,
  i2: number,
  cols: number,
  groupSize: number,
  settings: GptqSettings,
): number {
  if (groupSize >= cols || settings.staticGroups) return i2;
  let end = i2;
  for (let c = Math.ceil(i1 / groupSize) * groupSize; c < i2; c += groupSize) {
    end = Math.max(end, Math.min(cols, c + groupSize));
  }
  return end;
}

/**
 * Quantizes the block of columns `[i1, i2)` of `hw` (`rows × cols`, as the lazy updates of the
 * earlier blocks have left it) into `q` (original column order), spreading each column's error
 * over the block's later columns; returns the errors `(w − q)/U_ii` (`rows × (i2 − i1)`) for the
 * update of the columns after the block, and `loss` plus the block's part of the loss.
 */
export function gptqBlock(
  hw: Float64Array,
  factor: GptqFactor,
  q: Float64Array,
  rows: number,
  cols: number,
  i1: number,
  i2: number,
  grid: GroupGrid,
  settings: GptqSettings,
  loss: number,
): { err: Float64Array; loss: number } {
  const { hinv, perm } = factor;
  const grouped = grid.groupSize < cols;
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
  return { err, loss };
}

/**
 * GPTQ of one `rows × cols` weight matrix `w` given the Hessian `h` (`cols × cols`) into the
 * format of `grid` (`fasterquant` of the reference), all on the CPU in float64.
 */
export function gptqQuantize(
  w0: Float64Array,
  h: Float64Array,
  rows: number,
  cols: number,
  grid: GroupGrid,
  settings: GptqSettings,
  factor?: GptqFactor,
): GptqResult {
  checkActOrder(grid, cols, settings);
  const f = factor ?? gptqFactor(h, cols, settings);
  const hw = gptqWeights(w0, rows, cols, grid, settings, f);
  const { hinv } = f;
  const q = new Float64Array(rows * cols);
  let loss = 0;
  for (let i1 = 0; i1 < cols; i1 += settings.blockSize) {
    const i2 = Math.min(i1 + settings.blockSize, cols);
    const count = i2 - i1;
    const block = gptqBlock(hw, f, q, rows, cols, i1, i2, grid, settings, loss);
    loss = block.loss;
    const err = block.err;
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
  const device = GPTQ_DEVICES.find((d) => d === o.device);
  if (device === undefined) {
    throw new GptqOptionsError(
      `GPTQ's device must be one of ${GPTQ_DEVICES.join(", ")}, got ${JSON.stringify(o.device)}`,
    );
  }
  return {
    damp,
    blockSize,
    actOrder: o.act_order === true,
    staticGroups: o.static_groups === true,
    device,
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
  if (settings.device === "webgpu") {
    const why = await adapterUnavailable();
    if (why !== undefined) {
      throw new GptqOptionsError(`GPTQ with device: webgpu needs a WebGPU adapter: ${why}`);
    }
  }
  const calibration = resolveCalibration("gptq", options.calibration, ctx, model.config.maxSeqLen);
  const windows = await calibrationWindows(model, calibration, ctx.seed);
  const meter = new MemoryMeter();
  const layers = await quantizeLayers(
    model,
    {
      kind: "groups",
      sequential: options.true_sequential !== false,
      async quantizeGroup({ names }, inputs, { original }) {
        const cols = original[names[0]!].cols;
        const gpu = settings.device === "webgpu";
        // The group shares one Hessian (and, on the GPU path, one factor of it).
        const h = gpu ? await gpuHessian(inputs!, cols) : hessian(inputs!, cols);
        const held = meter.hold(h);
        const factor = gpu ? gptqFactor(h, cols, settings) : undefined;
        const quantized: Partial<Record<LinearName, Matrix>> = {};
        for (const name of names) {
          const m = original[name];
          const grid = groupGrid(format, m.rows, m.cols);
          const w = decodeMatrix(m);
          const q = gpu
            ? (await gptqQuantizeWebGpu(w, h, m.rows, m.cols, grid, settings, factor)).matrix
            : gptqQuantize(w, h, m.rows, m.cols, grid, settings).matrix;
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
