/**
 * AWQ's scale-search losses on a WebGPU device (the method option `device: webgpu`), the same
 * sums as the CPU's `awq.ts` computes, over the same candidate weights (fake-quantized there, by
 * the format's own rounding, so bit for bit the CPU's):
 *
 * - A linear feeding the residual stream alone (`wo`, `w2`): `Σ_r e_rᵀ·G·e_r` with `e` the
 *   candidate minus the float weights and `G = Σ_t x_t·x_tᵀ` over every calibration token. `G` is
 *   summed on the GPU (`kernels/webgpu/gram.ts`, float32 sums where the CPU sums float32
 *   products in float64: the CPU's takes `tokens · cols²` multiply-adds, 2 TFLOP for `w2` of a
 *   1.1B model over 65536 tokens) and stays there; `e·G` is a GEMM there
 *   (`kernels/webgpu/batch_linear.ts`) and only `e·G` (the size of the weights) comes back for
 *   the dot products.
 * - `[w1, w3]` through SwiGLU: all on the GPU (`kernels/webgpu/gated_loss.ts`): the group's
 *   inputs and the float SwiGLU output stay there for the whole search; per candidate its two
 *   matrices go there and only partial sums of squares come back.
 * - Another group inspected through a module (`[wq, wk, wv]` through the attention): the
 *   module's steps run over all windows at once on the window kernels GPTQ's calibration forward
 *   uses (`gptq_webgpu.ts`: the linears and attention on the GPU, RoPE on the CPU); the output
 *   goes to the GPU, where the float block's captured one waits, and the difference through the
 *   next linear and its sum of squares are computed there (`GpuTargetLoss`); partial sums come
 *   back, added here in float64.
 *
 * The clip search's error sums `dᵀ·G_g·d` per row and group take one GEMM a shrink step on the
 * GPU ({@linkcode gpuClipErrors}).
 *
 * The losses so differ from the CPU's by float32 rounding only (the CPU's search kernels and
 * the GPU's sum in other orders); a ratio is chosen differently only where two ratios' losses
 * lie within that rounding of each other (`awq_webgpu_test.ts` checks the choices on stories260K
 * and the mini fixture).
 *
 * @module
 */
import type { DenseMatrix, LayerWeights, LinearName } from "../../core/model.ts";
import type { BlockStep, BlockValue } from "../../core/graph.ts";
import type { BlockValues } from "../../kernels/cpu/block_interpreter.ts";
import { GpuGram } from "../../kernels/webgpu/gram.ts";
import { GpuBatchLinear } from "../../kernels/webgpu/batch_linear.ts";
import { GpuGatedLoss, GpuTargetLoss } from "../../kernels/webgpu/gated_loss.ts";
import { getGpu } from "../../kernels/webgpu/device.ts";
import { type CalibrationBlock, runWindows, type WindowKernels } from "./calibration.ts";
import { gemm, packRows } from "./search_kernels.ts";

/** A scale search's loss on the GPU, and the device memory it holds until destroyed. */
export interface GpuLoss {
  /** The mean squared error with the group's linears replaced by `weights`. */
  loss(weights: Partial<Record<LinearName, DenseMatrix>>): Promise<number>;
  destroy(): void;
}

/** Whether a `cols × cols` float32 matrix fits one storage binding (the GEMMs' weights). */
export async function squareFits(cols: number): Promise<boolean> {
  return cols * cols * 4 <= (await getGpu()).maxBinding;
}

/** `Σ xxᵀ` over the rows of every array of `xs`, summed on the GPU (float32). */
async function gpuGram(xs: Float32Array[], cols: number): Promise<Float32Array> {
  const gram = await GpuGram.create(cols);
  try {
    for (const x of xs) gram.add(x);
    return Float32Array.from(await gram.read());
  } finally {
    gram.destroy();
  }
}

/**
 * The loss of linear `name` (float weights `w`) alone over its `inputs`:
 * `Σ_r e_rᵀ·G·e_r / (tokens · rows)`, `G` summed on the GPU and `e·G` a GEMM there where `G`
 * fits a storage binding (else the CPU's float32 search GEMM).
 */
export async function gpuLoneLoss(
  name: LinearName,
  w: DenseMatrix,
  inputs: Float32Array[],
): Promise<GpuLoss> {
  const g = await gpuGram(inputs, w.cols);
  const gram = await squareFits(w.cols) ? await GpuBatchLinear.create(g, w.cols, w.cols) : g;
  const packed = gram instanceof Float32Array ? packRows(gram, w.cols, w.cols) : undefined;
  const tokens = inputs.reduce((n, x) => n + x.length / w.cols, 0);
  return {
    async loss(weights) {
      const e = weights[name]!.data.slice();
      for (let i = 0; i < e.length; i++) e[i]! -= w.data[i]!;
      // G is symmetric: the rows of e·Gᵀ are those of e·G.
      let eg: Float32Array;
      if (packed) gemm(eg = new Float32Array(e.length), e, packed);
      else [eg] = await (gram as GpuBatchLinear).apply([e]) as [Float32Array];
      let sum = 0;
      for (let i = 0; i < e.length; i++) sum += e[i]! * eg[i]!;
      return sum / (tokens * w.rows);
    },
    destroy: () => gram instanceof GpuBatchLinear && gram.destroy(),
  };
}

/** A group inspected through a module: what {@linkcode gpuModuleLoss} runs. */
export interface ModuleSearch {
  block: CalibrationBlock;
  /** Where the module's linears, SwiGLU and attention run. */
  windows: WindowKernels;
  steps: readonly BlockStep[];
  /** The float layer (the group's linears are swapped for the candidates). */
  layer: LayerWeights;
  /** The group's input and its captures, one array per window. */
  input: BlockValue;
  inputs: Float32Array[];
  /** The module's steps. */
  range: { from: number; to: number };
  /** The module's output, its float captures, and the float linear reading it. */
  output: BlockValue;
  expected: Float32Array[];
  next: DenseMatrix;
}

/**
 * The loss of a group through its module: `Σ ‖Next·(y' − y)‖² / (tokens · Next.rows)` over the
 * module's outputs `y'` with the candidates against the float block's `y`.
 */
export async function gpuModuleLoss(search: ModuleSearch): Promise<GpuLoss> {
  const { block, windows, steps, layer, input, inputs, range, output, expected, next } = search;
  const pair = gatedPair(steps, range, output);
  if (pair) {
    const [gate, up] = pair;
    const shape = { cols: layer[gate].cols, hidden: next.cols, out: next.rows };
    const gated = await GpuGatedLoss.create(shape, inputs, expected, next.data);
    const count = expected.reduce((n, y) => n + y.length / next.cols, 0);
    return {
      loss: async (weights) =>
        await gated.loss(weights[gate]!.data, weights[up]!.data) / (count * next.rows),
      destroy: () => gated.destroy(),
    };
  }
  const target = await GpuTargetLoss.create(next.cols, next.rows, expected, next.data);
  const tokens = expected.map((y) => y.length / next.cols);
  const count = tokens.reduce((n, t) => n + t, 0);
  return {
    async loss(weights) {
      const values = inputs.map((x): BlockValues => new Map([[input, x]]));
      await runWindows(block, windows, steps, { ...layer, ...weights }, values, tokens, range);
      return await target.loss(values.map((v) => v.get(output)!)) / (count * next.rows);
    },
    destroy: () => target.destroy(),
  };
}

/**
 * The gate and up linears when the module `range` is exactly SwiGLU's two linears (no biases)
 * and the SwiGLU writing `output`: the module whose loss stays on the GPU
 * (`kernels/webgpu/gated_loss.ts`).
 */
function gatedPair(
  steps: readonly BlockStep[],
  range: { from: number; to: number },
  output: BlockValue,
): [LinearName, LinearName] | undefined {
  const [g, u, sw] = [steps[range.from], steps[range.from + 1], steps[range.from + 2]];
  if (range.to !== range.from + 3 || g?.op !== "linear" || u?.op !== "linear") return;
  if (sw?.op !== "swiglu" || sw.output !== output || g.bias || u.bias) return;
  const paired = g.input === u.input && sw.gate === g.output && sw.up === u.output;
  return paired ? [g.weight, u.weight] : undefined;
}

/** The clip search's errors on the GPU: what {@linkcode gpuClipErrors} returns. */
export interface ClipErrors {
  /** `dᵀ·G_g·d` per row and column group (row-major, `rows × groups`) for `d = q − w`. */
  errors(q: Float32Array, w: Float32Array): Promise<Float64Array>;
  destroy(): void;
}

/**
 * The clip search's error sums with `e·G` on the GPU: the groups' Gram matrices `grams`
 * (`group × group` each, the last possibly smaller) as one block-diagonal `cols × cols` linear,
 * so that a shrink step is one GEMM of `d = q − w` (float32) whatever the number of groups (the
 * zeros off the blocks add nothing), and only `d·G` comes back for the per-group dot products,
 * summed here in float64. The CPU sums `dᵀGd` in float64 from float64 `d`: the sums differ by
 * float32 rounding. Undefined where `cols × cols` floats exceed a storage binding.
 */
export async function gpuClipErrors(
  grams: Float64Array[],
  cols: number,
  group: number,
): Promise<ClipErrors | undefined> {
  // Wider than a binding (an 8B model's 14336-wide w2): the CPU's sums.
  if (!(await squareFits(cols))) return undefined;
  const g = new Float32Array(cols * cols);
  grams.forEach((gram, k) => {
    const c0 = k * group;
    const n = Math.min(cols, c0 + group) - c0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        // The lower triangle is what the CPU's sum reads; mirror it.
        g[(c0 + i) * cols + c0 + j] = i >= j ? gram[i * n + j]! : gram[j * n + i]!;
      }
    }
  });
  const linear = await GpuBatchLinear.create(g, cols, cols);
  const groups = grams.length;
  return {
    async errors(q, w) {
      const d = new Float32Array(q.length);
      for (let i = 0; i < d.length; i++) d[i] = q[i]! - w[i]!;
      const [dg] = await linear.apply([d]);
      const rows = d.length / cols;
      const out = new Float64Array(rows * groups);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          out[r * groups + Math.floor(c / group)]! += d[r * cols + c]! * dg![r * cols + c]!;
        }
      }
      return out;
    },
    destroy: () => linear.destroy(),
  };
}
