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
 * `device: webgpu` moves the calibration forward's linears and attention, the Hessians, the
 * lazy updates between blocks and the factor of wide Hessians (float32, as the reference
 * computes it) onto a WebGPU device (`gptq_webgpu.ts`); for integer formats the blocks' column
 * loop runs there too, otherwise the blocks are quantized here, in float64.
 * `QUANTBENCH_PROFILE=1` prints the seconds per phase and layer on stderr (`gptq_profile.ts`).
 *
 * @module
 */
import type { Method, MethodContext } from "./method.ts";
import type { LinearName, LlamaModel, Matrix } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { decodeRow } from "../../kernels/formats/matrix.ts";
import { hessian } from "./linalg.ts";
import { gridUnsupported, type GroupGrid, groupGrid } from "./grid.ts";
import {
  calibrationWindows,
  matrixBuffers,
  MemoryMeter,
  resolveCalibration,
} from "./calibration.ts";
import { quantizeLayers } from "./sequential.ts";
import { withRuntime } from "./runtime.ts";
import { gptqQuantizeWebGpu, gpuGroupFactor, gpuWindowKernels } from "./gptq_webgpu.ts";
import {
  checkActOrder,
  GPTQ_DEVICES,
  gptqBlock,
  gptqFactor,
  GptqOptionsError,
  type GptqResult,
  type GptqSettings,
  gptqWeights,
} from "./gptq_loop.ts";
import { adapterUnavailable, getGpu } from "../../kernels/webgpu/device.ts";
import { GpuWindowInputs } from "../../kernels/webgpu/window_inputs.ts";
import { GptqProfile, profileRequested } from "./gptq_profile.ts";

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
): GptqResult {
  checkActOrder(grid, cols, settings);
  const f = gptqFactor(h, cols, settings);
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
  const profile = profileRequested() ? new GptqProfile() : undefined;
  // The windows' activations on the device, shared by the forward's linears and the Hessians.
  const store = settings.device === "webgpu" ? new GpuWindowInputs(await getGpu()) : undefined;
  let layerIndex = 0;
  const layers = await quantizeLayers(
    model,
    {
      kind: "groups",
      sequential: options.true_sequential !== false,
      windows: store && gpuWindowKernels(model.config, profile, store),
      // The Hessians read the inputs from the store.
      deviceInputs: true,
      async quantizeGroup({ names }, inputs, { original, index }) {
        if (profile && index !== layerIndex) profile.layer(`layer ${layerIndex}`);
        layerIndex = index;
        const cols = original[names[0]!].cols;
        const gpu = settings.device === "webgpu";
        // The group shares one Hessian (and, on the GPU path, one factor of it).
        let t = performance.now();
        const { h, factor } = gpu
          ? await gpuGroupFactor(inputs!, cols, settings, profile, undefined, store)
          : { h: hessian(inputs!, cols), factor: undefined };
        if (profile) t = gpu ? performance.now() : profile.add("hessian", t);
        const held = meter.hold(h ?? factor!.hinv);
        const quantized: Partial<Record<LinearName, Matrix>> = {};
        for (const name of names) {
          const m = original[name];
          const grid = groupGrid(format, m.rows, m.cols);
          const w = decodeMatrix(m);
          if (profile) t = profile.add("decode", t);
          const q = gpu
            ? (await gptqQuantizeWebGpu(w, h, m.rows, m.cols, grid, settings, {
              factor,
              format,
              profile,
            })).matrix
            : gptqQuantize(w, h!, m.rows, m.cols, grid, settings).matrix;
          if (profile) t = gpu ? performance.now() : profile.add("cpuLoop", t);
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
  if (profile) {
    profile.layer(`layer ${layerIndex}`);
    profile.total();
  }
  ctx.record?.({ quantize_peak_bytes: meter.peak });
  return withRuntime({ ...model, weights: { ...model.weights, layers } }, format);
}

/** GPTQ: calibrated, column-by-column quantization with second-order error feedback. */
export const gptq: Method = {
  name: "gptq",
  description: "GPTQ (second-order, column by column) into int, FP8/FP4, MX and NVFP4 formats",
  options: GPTQ_OPTIONS,
  unsupported: (format) => gridUnsupported(format),
  checkOptions: (options) => void settingsOf(options),
  quantize: quantizeModel,
};
