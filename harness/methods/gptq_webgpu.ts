/**
 * GPTQ with its heavy arithmetic on a WebGPU device (the method option `device: webgpu`): the
 * Hessian `H = 2/N · Σ xxᵀ` accumulates there (`kernels/webgpu/gram.ts`, float32 sums; the
 * scaling by `2/N` in float64 here, as `gptq.ts` does), and the column loop keeps the weights
 * there, where the update of the columns after each block — `rows · cols² / 2` multiply-adds
 * against the block's `rows · cols · block_size / 2` — runs as a GEMM
 * (`kernels/webgpu/gptq_columns.ts`). Each block's columns are read back and quantized here in
 * float64 by the same code as the CPU path (`gptqBlock`), on the format's own grid, so every
 * format with a grid works and group parameters are fitted exactly where the CPU fits them. The
 * Cholesky factor `U` of `H⁻¹`, computed once per group of linears, is the CPU's float64 one
 * below {@linkcode GPU_FACTOR_MIN_COLS} columns and the GPU's float32 one from there
 * (`kernels/webgpu/gptq_factor.ts`: the CPU's takes minutes at 5632).
 *
 * The calibration forward runs its linears and attention there too, all windows at once
 * ({@linkcode gpuWindowKernels}); norms, RoPE, SwiGLU and residual adds stay on the CPU.
 *
 * Results differ from the CPU path only by float32 rounding in the Hessian and in the lazily
 * updated weights: a weight whose value lands within that rounding of a rounding boundary may
 * take the neighbouring code.
 *
 * @module
 */
import { GpuGram } from "../../kernels/webgpu/gram.ts";
import { GpuGptqColumns } from "../../kernels/webgpu/gptq_columns.ts";
import { gpuInverseFactor } from "../../kernels/webgpu/gptq_factor.ts";
import { getGpu } from "../../kernels/webgpu/device.ts";
import {
  dampedHessian,
  gptqBlock,
  gptqBlockReach,
  type GptqFactor,
  gptqFactor,
  type GptqResult,
  type GptqSettings,
  gptqWeights,
} from "./gptq_loop.ts";
import type { GroupGrid } from "./grid.ts";
import type { WindowKernels } from "./calibration.ts";
import type { LlamaConfig, Matrix } from "../../core/model.ts";
import { decodeRow } from "../../kernels/formats/matrix.ts";
import { GpuBatchLinear } from "../../kernels/webgpu/batch_linear.ts";
import { gpuWindowAttention } from "../../kernels/webgpu/batch_attention.ts";

/**
 * Widths from which the factor is computed on the GPU in float32 (as PyTorch's reference does);
 * narrower Hessians keep the CPU's float64 factor, which takes seconds there.
 */
export const GPU_FACTOR_MIN_COLS = 1024;

/**
 * GPTQ's factor of `h` ({@linkcode gptqFactor}): on the GPU from `minCols` columns on where it
 * fits a storage binding, else the CPU's.
 */
export async function gptqFactorWebGpu(
  h: Float64Array,
  cols: number,
  settings: GptqSettings,
  minCols = GPU_FACTOR_MIN_COLS,
): Promise<GptqFactor> {
  // A Hessian over one storage binding (14336 wide: 822 MB) keeps the CPU's factor.
  if (cols < minCols || cols * cols * 4 > (await getGpu()).maxBinding) {
    return gptqFactor(h, cols, settings);
  }
  const { hh, perm, dead } = dampedHessian(h, cols, settings);
  return { hinv: await gpuInverseFactor(hh, cols), perm, dead };
}

/** `H = 2/N · Σ xxᵀ` over the captured inputs `xs` (N = windows), summed on the GPU. */
export async function gpuHessian(xs: Float32Array[], cols: number): Promise<Float64Array> {
  const gram = await GpuGram.create(cols);
  try {
    for (const x of xs) gram.add(x);
    const h = await gram.read();
    for (let i = 0; i < h.length; i++) h[i]! *= 2 / xs.length;
    return h;
  } finally {
    gram.destroy();
  }
}

/**
 * GPTQ of one `rows × cols` weight matrix `w0` given the Hessian `h` into the format of `grid`,
 * with the block updates on the GPU (see the module notes); `factor` when the group already
 * has it.
 */
export async function gptqQuantizeWebGpu(
  w0: Float64Array,
  h: Float64Array,
  rows: number,
  cols: number,
  grid: GroupGrid,
  settings: GptqSettings,
  factor?: GptqFactor,
): Promise<GptqResult> {
  const f = factor ?? await gptqFactorWebGpu(h, cols, settings);
  // The float64 mirror of the weights: each block's reach is refreshed from the device.
  const hw = gptqWeights(w0, rows, cols, grid, settings, f);
  const device = await GpuGptqColumns.create(hw, rows, cols, settings.blockSize);
  try {
    const q = new Float64Array(rows * cols);
    let loss = 0;
    for (let i1 = 0; i1 < cols; i1 += settings.blockSize) {
      const i2 = Math.min(i1 + settings.blockSize, cols);
      if (i1 > 0) {
        const reach = gptqBlockReach(i1, i2, cols, grid.groupSize, settings);
        await device.readColumns(i1, reach, hw);
      }
      const block = gptqBlock(hw, f, q, rows, cols, i1, i2, grid, settings, loss);
      loss = block.loss;
      device.update(block.err, f.hinv, i1, i2);
    }
    return { matrix: grid.build(), q, loss };
  } finally {
    device.destroy();
  }
}

/** A matrix decoded to float32 (what the CPU's linear multiplies by). */
function decode32(m: Matrix): Float32Array {
  const out = new Float32Array(m.rows * m.cols);
  for (let r = 0; r < m.rows; r++) decodeRow(m, r, out.subarray(r * m.cols, (r + 1) * m.cols));
  return out;
}

/**
 * The calibration forward's linears and attention on the GPU, over all windows at once
 * (`kernels/webgpu/batch_linear.ts`, `batch_attention.ts`); the cheap steps stay on the CPU.
 */
export function gpuWindowKernels(config: LlamaConfig): WindowKernels {
  return {
    async linear(xs, name, layer) {
      const m = layer[name];
      const linear = await GpuBatchLinear.create(decode32(m), m.rows, m.cols);
      try {
        return await linear.apply(xs);
      } finally {
        linear.destroy();
      }
    },
    attention: (qs, ks, vs) =>
      gpuWindowAttention(qs.map((q, i) => ({ q, k: ks[i]!, v: vs[i]! })), {
        nHeads: config.nHeads,
        nKvHeads: config.nKvHeads,
        headDim: config.headDim,
      }),
  };
}
