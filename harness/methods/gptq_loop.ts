/**
 * GPTQ's column loop, shared by the CPU path (`gptq.ts`) and the WebGPU one (`gptq_webgpu.ts`):
 * the factor `U` of the damped inverse Hessian, the weights as the loop starts on them, and the
 * quantization of one block of columns with its error feedback inside the block. What happens
 * between blocks (the lazy update of the later columns) is each path's own.
 *
 * @module
 */
import { cholesky, choleskyInverse, upperCholesky } from "./linalg.ts";
import type { GroupGrid } from "./grid.ts";
import type { Matrix } from "../../core/model.ts";

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

/** What GPTQ's column loop takes from the Hessian: `U`, the upper Cholesky factor of `H⁻¹`. */
export interface GptqFactor {
  /**
   * `U` (`cols × cols`) of the damped Hessian, columns in quantization order: float64 from the
   * CPU, float32 from the GPU.
   */
  hinv: Float64Array | Float32Array;
  /** The column order (act_order), or undefined for the natural one. */
  perm?: number[];
  /** Dead inputs (`H_ii = 0`), whose weights are zeroed. */
  dead: number[];
}

/** The Hessian as the factor takes it: damped, in quantization order. */
export interface DampedHessian {
  /** `H` with dead inputs at `H_ii = 1`, permuted, `damp · mean(diag H)` on the diagonal. */
  hh: Float64Array;
  perm?: number[];
  dead: number[];
}

/** What {@linkcode dampedHessian} does to a Hessian, read off its diagonal alone. */
export interface DampPlan {
  /** The column order (act_order), or undefined for the natural one. */
  perm?: number[];
  /** Dead inputs (`H_ii = 0`), whose diagonal becomes 1. */
  dead: number[];
  /** `damp · mean(diag H)` (dead inputs counted as 1), added to the diagonal. */
  damp: number;
}

/**
 * The plan for a Hessian whose diagonal is `diag`: dead inputs get `H_ii = 1`, act_order orders
 * by decreasing `H_ii` (stable for ties), and the damping is `damp · mean(diag H)`, summed in
 * quantization order.
 */
export function dampPlan(diag: ArrayLike<number>, settings: GptqSettings): DampPlan {
  const cols = diag.length;
  const d = Float64Array.from(diag);
  const dead: number[] = [];
  for (let i = 0; i < cols; i++) {
    if (d[i] !== 0) continue;
    d[i] = 1;
    dead.push(i);
  }
  let perm: number[] | undefined;
  if (settings.actOrder) {
    perm = Array.from({ length: cols }, (_, i) => i);
    perm.sort((a, b) => d[b]! - d[a]! || a - b);
  }
  let mean = 0;
  for (let i = 0; i < cols; i++) mean += d[perm ? perm[i]! : i]!;
  return { perm, dead, damp: settings.damp * (mean / cols) };
}

/**
 * The Hessian `h` (`cols × cols`, left unchanged) prepared for its factor
 * ({@linkcode dampPlan}).
 */
export function dampedHessian(
  h0: Float64Array,
  cols: number,
  settings: GptqSettings,
): DampedHessian {
  const diag = new Float64Array(cols);
  for (let i = 0; i < cols; i++) diag[i] = h0[i * cols + i]!;
  const { perm, dead, damp } = dampPlan(diag, settings);
  const h = h0.slice();
  for (const i of dead) h[i * cols + i] = 1;
  let hh = h;
  if (perm) {
    hh = new Float64Array(cols * cols);
    for (let j = 0; j < cols; j++) {
      for (let i = 0; i < cols; i++) hh[i * cols + j] = h[perm[i]! * cols + perm[j]!]!;
    }
  }
  for (let i = 0; i < cols; i++) hh[i * cols + i]! += damp;
  return { hh, perm, dead };
}

/**
 * The factor of the Hessian `h` ({@linkcode dampedHessian}), in float64: `U`, the upper Cholesky
 * factor of the inverse. It depends on `h` and the settings only, so the linears of a group
 * share it.
 */
export function gptqFactor(h: Float64Array, cols: number, settings: GptqSettings): GptqFactor {
  const { hh, perm, dead } = dampedHessian(h, cols, settings);
  const hinv = upperCholesky(choleskyInverse(cholesky(hh, cols), cols), cols);
  return { hinv, perm, dead };
}

/** Refuses act_order with free groups. */
export function checkActOrder(grid: GroupGrid, cols: number, settings: GptqSettings): void {
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
