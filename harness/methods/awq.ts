/**
 * AWQ (Lin et al., 2024) as the reference implementation (mit-han-lab llm-awq:
 * `pre_quant.run_awq`, `auto_scale.auto_scale_block`, `auto_clip.auto_clip_block`) runs it on a
 * Llama block, with the suite's format as the quantizer:
 *
 * 1. The block's linear inputs are captured on the calibration windows by the sequential driver
 *    (`sequential.ts`, a `layer` method); the block is the float one and its float output is the
 *    next block's input (the reference computes `inps` before it scales or quantizes anything).
 *    Where a group's scales fold, which groups are inspected through what, and which linears feed
 *    the attention's queries and keys all come from the block's steps (`core/graph.ts`).
 * 2. Scale search, per group of linears sharing an input: `s = mean|x|^α` (clamped at 1e-4,
 *    divided by `sqrt(max s · min s)`) for α = 0, 1/20, …, 19/20 (`n_grid`); the linears become
 *    `Q(W·diag(s))·diag(s)⁻¹` and the α with the least mean squared error of the inspected module's
 *    output wins: `[wq, wk, wv]` inspected through the whole attention (with `wo` in float),
 *    `[wo]` alone (only when `wv` and `wo` have the same shape — not with grouped-query
 *    attention, as in the reference), `[w1, w3]` through the whole MLP, `[w2]` alone: a group is
 *    inspected through the steps up to the next group's input and that group's linear, unless its
 *    linear feeds the residual stream, where it is alone. Every search
 *    uses the original weights; then all scales are applied: `1/s` folded into the preceding
 *    RMSNorm (`attnNorm`, `ffnNorm`) or linear (`wv`'s rows for `wo`, `w3`'s rows for `w2`), `s`
 *    into the linears' columns, and the captured inputs divided by `s`.
 * 3. Clipping search (`mse_range`), for every linear but `wq` and `wk`: per row and group,
 *    `max = amax · (1 − i/20)` for i < `max_shrink`·20; the weights clamped to ±max are quantized
 *    and the group's output on every (N // `n_sample_token`)-th captured token compared with the
 *    unclamped float output; the least mean squared error wins and the weights are clamped to it.
 * 4. The scaled, clipped weights are rounded to the format (its RTN).
 *
 * The quantizer inside both searches is the format's own rounding (for `int` formats the GPTQ
 * convention of `int.ts`: a range that includes zero and f16 scales — llm-awq's own asymmetric
 * quantizer takes the bare min and max); groups are the format's group or block, a row when it
 * has none.
 *
 * The losses are the reference's, computed for speed (the scale search re-runs half a block 20
 * times per group): the inspected steps are interpreted on the float32 search kernels of
 * `search_kernels.ts` (a packed GEMM, a causal attention, SiLU·up) rather than the CPU backend's,
 * and are compared with the float values the block captured; a lone linear's output error
 * `Σ_t ‖(W' − W)·x_t‖²` is taken as `Σ_r e_rᵀ·G·e_r` with the Gram matrix `G = Σ_t x_t·x_tᵀ`,
 * and a clip group's likewise from its slice of `G` (in float64). The losses so differ from a direct evaluation
 * only by float32 rounding.
 *
 * `device: webgpu` runs the calibration forward's linears, SwiGLU and attention on a WebGPU
 * device, all windows at once (`calibration_device.ts`), and the scale search's losses there
 * (`awq_webgpu.ts`: the Gram matrices and `e·G` of lone linears, the inspected modules over all
 * windows and the next linear) and the clip search's `dᵀGd` sums; the candidates are
 * fake-quantized here, so they are the CPU's bit for bit, and a ratio or clamp is chosen
 * differently from the CPU only where two candidates' errors lie within float32 rounding of each
 * other. The statistics (`mean|x|`, one pass over captures the forward brings back anyway) and
 * the final rounding stay here.
 * `QUANTBENCH_PROFILE=1` prints the seconds per phase and layer on stderr (`gptq_profile.ts`;
 * phases `searchQuantize`, `searchLoss`, `clip`, `quantize` and the forward's).
 *
 * @module
 */
import type { Method, MethodContext } from "./method.ts";
import type {
  DenseMatrix,
  LayerWeights,
  LinearName,
  LlamaConfig,
  LlamaModel,
  Matrix,
} from "../../core/model.ts";
import { dense, LINEAR_NAMES } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { elementFormats, FormatSettingsError } from "../../kernels/formats/registry.ts";
import { decodeRow } from "../../kernels/formats/matrix.ts";
import {
  calibrationWindows,
  matrixBuffers,
  MemoryMeter,
  resolveCalibration,
} from "./calibration.ts";
import { firstReader, type LayerContext, normCopies, quantizeLayers } from "./sequential.ts";
import {
  type BlockStep,
  type BlockValue,
  type NormName,
  producerIndex,
  stepOutput,
} from "../../core/graph.ts";
import type { BlockKernels, BlockValues } from "../../kernels/cpu/block_interpreter.ts";
import { addGram } from "./linalg.ts";
import {
  causalAttention,
  gemm,
  type PackedRows,
  packRows,
  siluMul,
  sumOfSquares,
} from "./search_kernels.ts";
import { withRuntime } from "./runtime.ts";
import type { WindowKernels } from "./calibration.ts";
import { calibrationDevice, calibrationRun } from "./calibration_device.ts";
import type { GptqProfile } from "./gptq_profile.ts";
import { gpuClipErrors, gpuLoneLoss, type GpuLoss, gpuModuleLoss } from "./awq_webgpu.ts";

/** Options and their defaults: llm-awq's (`run_awq`, `entry.py`, `auto_clip_layer`). */
export const AWQ_OPTIONS = {
  calibration: { dataset: "", samples: 128, seq_len: 512 },
  n_grid: 20,
  auto_scale: true,
  mse_range: true,
  max_shrink: 0.5,
  n_sample_token: 512,
  /** Where the calibration forward and the searches' losses run: `cpu` or `webgpu`. */
  device: "cpu",
};

/** Why AWQ cannot produce `format`, or undefined when it can. */
function unsupported(format: FormatSpec): string | undefined {
  const element = elementFormats.get(format.weights);
  if (element.kind === "float") {
    return `method "awq" quantizes; format "${format.id}" is ${format.weights}, the unquantized ` +
      `baseline (use method none)`;
  }
  return element.unsupported(format);
}

/** A float32 copy of any matrix's values (`rows × cols`). */
export function decoded(m: Matrix): Float32Array {
  if (m.kind === "dense") return m.data.slice();
  const out = new Float32Array(m.rows * m.cols);
  for (let r = 0; r < m.rows; r++) decodeRow(m, r, out.subarray(r * m.cols, (r + 1) * m.cols));
  return out;
}

/** `data` rounded to `format` and decoded (the reference's `pseudo_quantize_tensor`). */
export function fakeQuantize(
  format: FormatSpec,
  rows: number,
  cols: number,
  data: Float32Array,
): Float32Array {
  const element = elementFormats.get(format.weights);
  if (element.kind === "float") throw new FormatSettingsError(unsupported(format));
  return decoded(element.quantize(format, dense(rows, cols, data)));
}

/** Weights per clipping group: the format's group or fixed block, or the whole row. */
export function clipGroup(format: FormatSpec, cols: number): number {
  const element = elementFormats.get(format.weights);
  const block = element.kind === "coded" ? element.block : undefined;
  const group = format.group > 0 ? format.group : block !== undefined && block > 1 ? block : cols;
  return Math.min(group, cols);
}

/** The mean of |x| per input channel over the rows of every array (`get_act_scale`). */
export function meanAbs(xs: Float32Array[], cols: number): Float64Array {
  const sum = new Float64Array(cols);
  let n = 0;
  for (const x of xs) {
    for (let base = 0; base < x.length; base += cols) {
      for (let c = 0; c < cols; c++) sum[c]! += Math.abs(x[base + c]!);
      n++;
    }
  }
  return sum.map((v) => v / n);
}

/** Candidate scales for ratio α: `x^α` clamped at 1e-4, divided by `sqrt(max · min)`. */
export function ratioScales(xMean: Float64Array, ratio: number): Float32Array {
  const s = Float32Array.from(xMean, (v) => Math.max(Math.pow(v, ratio), 1e-4));
  let max = -Infinity;
  let min = Infinity;
  for (const v of s) {
    max = Math.max(max, v);
    min = Math.min(min, v);
  }
  const norm = Math.fround(Math.sqrt(Math.fround(max * min)));
  return s.map((v) => v / norm);
}

/** `W·diag(s)` for a `rows × cols` row-major `w`. */
function scaleColumns(w: Float32Array, cols: number, s: ArrayLike<number>): Float32Array {
  const out = new Float32Array(w.length);
  for (let base = 0; base < w.length; base += cols) {
    for (let c = 0; c < cols; c++) out[base + c] = w[base + c]! * s[c]!;
  }
  return out;
}

/** A group of linears sharing an input, as the scale search sees it. */
export interface ScaleGroup {
  names: readonly LinearName[];
  inputs: Float32Array[];
  /**
   * Mean squared error, over every element, of the inspected module's output with the group's
   * linears replaced by `weights` against its float output.
   */
  loss(weights: Partial<Record<LinearName, DenseMatrix>>): number | Promise<number>;
}

/**
 * The best scales of one group (`_search_module_scale`): the α whose `Q(W·s)/s` gives the least
 * mean squared error of the inspected output (the first one on ties). Returns the scales, every
 * α's loss and the index of the chosen α.
 */
export async function searchScales(
  group: ScaleGroup,
  weights: Partial<Record<LinearName, DenseMatrix>>,
  format: FormatSpec,
  nGrid: number,
  profile?: GptqProfile,
): Promise<{ scales: Float32Array; losses: number[]; ratio: number }> {
  const cols = weights[group.names[0]!]!.cols;
  const xMean = meanAbs(group.inputs, cols);
  let best: Float32Array | undefined;
  let bestLoss = Infinity;
  let ratio = -1;
  const losses: number[] = [];
  // Ratio i's candidate weights `Q(W·s)/s`.
  const candidate = (i: number) => {
    const t = performance.now();
    const s = ratioScales(xMean, i / nGrid);
    const replaced: Partial<Record<LinearName, DenseMatrix>> = {};
    for (const name of group.names) {
      const w = weights[name]!;
      const q = fakeQuantize(format, w.rows, w.cols, scaleColumns(w.data, w.cols, s));
      for (let base = 0; base < q.length; base += w.cols) {
        for (let c = 0; c < w.cols; c++) q[base + c]! /= s[c]!;
      }
      replaced[name] = dense(w.rows, w.cols, q);
    }
    profile?.add("searchQuantize", t);
    return { s, replaced };
  };
  let next = nGrid > 0 ? candidate(0) : undefined;
  for (let i = 0; i < nGrid; i++) {
    const { s, replaced } = next!;
    const t0 = performance.now();
    const pending = group.loss(replaced);
    const t1 = performance.now();
    // The next candidate is made while a device computes this one's loss (a CPU loss is done).
    next = i + 1 < nGrid ? candidate(i + 1) : undefined;
    const t2 = performance.now();
    const loss = await pending;
    // The loss's own time: its synchronous part and the wait after the next candidate.
    profile?.addSeconds("searchLoss", (t1 - t0 + performance.now() - t2) / 1000);
    losses.push(loss);
    if (loss < bestLoss) {
      bestLoss = loss;
      best = s;
      ratio = i;
    }
  }
  if (best === undefined) throw new RangeError(`AWQ scale search found no finite loss: ${losses}`);
  return { scales: best, losses, ratio };
}

/** The rows of every array of `xs`. */
function tokensOf(xs: Float32Array[], cols: number): number {
  return xs.reduce((n, x) => n + x.length / cols, 0);
}

/**
 * The mean squared error of a lone linear's output when its weights `w` become `replaced`,
 * over inputs whose Gram matrix `Σ xxᵀ` is `gram` (packed) and with `tokens` rows:
 * `Σ_r e_rᵀ·G·e_r / (tokens · rows)` with `e = replaced − w` — the same sum as over the outputs,
 * at a cost independent of the number of tokens.
 */
function loneLinearError(
  replaced: DenseMatrix,
  w: DenseMatrix,
  gram: PackedRows,
  tokens: number,
): number {
  const e = replaced.data.slice();
  for (let i = 0; i < e.length; i++) e[i]! -= w.data[i]!;
  const eg = new Float32Array(e.length);
  gemm(eg, e, gram);
  let sum = 0;
  for (let i = 0; i < e.length; i++) sum += e[i]! * eg[i]!;
  return sum / (tokens * w.rows);
}

/** `Σ xxᵀ` over the rows of every array of `xs`, packed for `gemm`. */
function packedGram(xs: Float32Array[], cols: number): PackedRows {
  const gram = new Float64Array(cols * cols);
  for (const x of xs) addGram(gram, x, cols, "search");
  return packRows(Float32Array.from(gram), cols, cols);
}

/** A dense matrix packed for `gemm`. */
function packed(m: DenseMatrix): PackedRows {
  return packRows(m.data, m.rows, m.cols);
}

/**
 * Clipping search of one linear (`auto_clip_layer`): per row and group the clamp `±max` with
 * the least output error on the sampled tokens; returns `w` clamped to it.
 *
 * The error of a row's group is `Σ_t (x_t·(q − w))² / n` over the sampled tokens `x_t` (the
 * group's slice); it is computed as the quadratic form `dᵀ·G·d / n` with `d = q − w` and the
 * group's Gram matrix `G = Σ_t x_t·x_tᵀ`, in float64 — the same sum regrouped, so a row costs
 * `group²` per shrink step instead of `tokens × group`. With `gpu` the sums take one GEMM a step
 * on the GPU ({@linkcode gpuClipErrors}, float32).
 */
export async function clipWeights(
  w: DenseMatrix,
  inputs: Float32Array[],
  format: FormatSpec,
  nGrid: number,
  maxShrink: number,
  nSampleToken: number,
  gpu = false,
): Promise<Float32Array> {
  const { rows, cols, data } = w;
  const group = clipGroup(format, cols);
  const groups = Math.ceil(cols / group);
  // Every stride-th token of all windows, as `input_feat[:, 0::n // n_sample_token]`.
  const total = inputs.reduce((n, x) => n + x.length / cols, 0);
  const stride = Math.max(1, Math.floor(total / nSampleToken));
  const tokens: Float32Array[] = [];
  let index = 0;
  for (const x of inputs) {
    for (let t = 0; t < x.length / cols; t++, index++) {
      if (index % stride === 0) tokens.push(x.subarray(t * cols, (t + 1) * cols));
    }
  }
  // Gram matrices of the groups' input slices: `group × group` each (the last may be smaller).
  const grams = Array.from({ length: groups }, (_, g) => {
    const c0 = g * group;
    const n = Math.min(cols, c0 + group) - c0;
    const gram = new Float64Array(n * n);
    for (const x of tokens) {
      for (let i = 0; i < n; i++) {
        const xi = x[c0 + i]!;
        for (let j = 0; j <= i; j++) gram[i * n + j]! += xi * x[c0 + j]!;
      }
    }
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) gram[j * n + i] = gram[i * n + j]!;
    return gram;
  });
  const amax = new Float64Array(rows * groups);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = r * groups + Math.floor(c / group);
      amax[i] = Math.max(amax[i]!, Math.abs(data[r * cols + c]!));
    }
  }
  const best = Float64Array.from(amax);
  const minErr = new Float64Array(rows * groups).fill(1e9);
  const clamped = new Float32Array(rows * cols);
  const device = gpu ? await gpuClipErrors(grams, cols, group) : undefined;
  const steps = Math.floor(maxShrink * nGrid);
  const quantized = (step: number) => {
    clampGroups(data, cols, group, amax.map((m) => m * (1 - step / nGrid)), clamped);
    return fakeQuantize(format, rows, cols, clamped);
  };
  let q = steps > 0 ? quantized(0) : undefined;
  try {
    for (let step = 0; step < steps; step++) {
      const factor = 1 - step / nGrid;
      const pending = device ? device.errors(q!, data) : groupErrors(q!, data, cols, grams);
      // The next step's weights are rounded while the device sums this one's errors.
      q = step + 1 < steps ? quantized(step + 1) : undefined;
      const sums = await pending;
      for (let i = 0; i < rows * groups; i++) {
        const err = sums[i]! / tokens.length;
        if (err < minErr[i]!) {
          minErr[i] = err;
          best[i] = amax[i]! * factor;
        }
      }
    }
  } finally {
    device?.destroy();
  }
  return clampGroups(data, cols, group, best, new Float32Array(rows * cols));
}

/**
 * `dᵀ·G_g·d` per row and column group `g` (row-major, `rows × groups`) for `d = q − w`, from the
 * lower triangle of each group's Gram matrix `grams[g]`, in float64.
 */
function groupErrors(
  q: Float32Array,
  data: Float32Array,
  cols: number,
  grams: Float64Array[],
): Float64Array {
  const groups = grams.length;
  const group = Math.sqrt(grams[0]!.length);
  const rows = data.length / cols;
  const out = new Float64Array(rows * groups);
  const d = new Float64Array(group);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const c0 = g * group;
      const n = Math.min(cols, c0 + group) - c0;
      const gram = grams[g]!;
      for (let i = 0; i < n; i++) d[i] = q[r * cols + c0 + i]! - data[r * cols + c0 + i]!;
      // dᵀGd from the lower triangle: Σ_i d_i (G_ii d_i + 2 Σ_{j<i} G_ij d_j).
      let sum = 0;
      for (let i = 0; i < n; i++) {
        let off = 0;
        for (let j = 0; j < i; j++) off += gram[i * n + j]! * d[j]!;
        sum += d[i]! * (gram[i * n + i]! * d[i]! + 2 * off);
      }
      out[r * groups + g] = sum;
    }
  }
  return out;
}

/** `data` clamped to `±max[r·groups + g]` per row `r` and column group `g`, into `out`. */
function clampGroups(
  data: Float32Array,
  cols: number,
  group: number,
  max: Float64Array,
  out: Float32Array,
): Float32Array {
  const groups = Math.ceil(cols / group);
  for (let r = 0, k = 0; r < data.length / cols; r++) {
    for (let c = 0; c < cols; c++, k++) {
      const m = max[r * groups + Math.floor(c / group)]!;
      out[k] = Math.min(m, Math.max(-m, data[k]!));
    }
  }
  return out;
}

/** Divides every row of every array by `s` elementwise (the captured inputs after scaling). */
function divideInputs(xs: Float32Array[], s: Float32Array): void {
  for (const x of xs) for (let i = 0; i < x.length; i++) x[i]! /= s[i % s.length]!;
}

/** AWQ over a whole model (see the module notes). */
async function quantizeModel(
  model: LlamaModel,
  format: FormatSpec,
  options: Record<string, unknown>,
  ctx: MethodContext,
): Promise<LlamaModel> {
  const element = elementFormats.get(format.weights);
  const reason = unsupported(format);
  if (reason !== undefined || element.kind === "float") throw new FormatSettingsError(reason);
  const o = { ...AWQ_OPTIONS, ...options };
  const nGrid = Number(o.n_grid);
  const run = await calibrationRun("awq", calibrationDevice("awq", o.device), model.config);
  const { profile } = run;
  const calibration = resolveCalibration("awq", o.calibration, ctx, model.config.maxSeqLen);
  const windows = await calibrationWindows(model, calibration, ctx.seed);
  const meter = new MemoryMeter();
  const layers = await quantizeLayers(
    model,
    {
      kind: "layer",
      windows: run.windows,
      async quantizeLayer(captures, layer) {
        const { original, steps, groups } = layer;
        // Float copies of the linears: scaling and clipping work on them.
        const w = Object.fromEntries(
          LINEAR_NAMES.map((
            n,
          ) => [n, dense(original[n].rows, original[n].cols, decoded(original[n]))]),
        ) as Record<LinearName, DenseMatrix>;
        const norms = normCopies(steps, original);
        let t = performance.now();
        if (o.auto_scale !== false) {
          const searches = scaleGroups(layer, captures, w, norms, run.searchWindows);
          const gramBytes = meter.hold(searches.flatMap((g) => g.held));
          // All searches see the original weights (auto_scale_block), then all scales apply.
          const found: Float32Array[] = [];
          for (const { group, release } of searches) {
            found.push((await searchScales(group, w, format, nGrid, profile)).scales);
            release?.();
          }
          searches.forEach(({ apply }, i) => apply(found[i]!));
          meter.release(gramBytes);
          t = performance.now();
        }
        if (o.mse_range !== false) {
          for (const { names, input } of groups) {
            for (const name of names.filter((n) => !feedsQueryOrKey(steps, n))) {
              const m = w[name];
              const clipped = await clipWeights(
                m,
                captures.get(input)!,
                format,
                nGrid,
                Number(o.max_shrink),
                Number(o.n_sample_token),
                run.device === "webgpu",
              );
              w[name] = dense(m.rows, m.cols, clipped);
            }
          }
          if (profile) t = profile.add("clip", t);
        }
        const quantized: LayerWeights = { ...original, ...norms };
        for (const name of LINEAR_NAMES) {
          quantized[name] = element.quantize(format, w[name]);
          meter.hold(matrixBuffers(quantized[name]));
        }
        if (profile) {
          profile.add("quantize", t);
          profile.layer(`layer ${layer.index}`);
        }
        return quantized;
      },
    },
    windows,
    meter,
  ).finally(() => run.searchWindows?.release?.());
  profile?.total();
  ctx.record?.({ quantize_peak_bytes: meter.peak });
  return withRuntime({ ...model, weights: { ...model.weights, layers } }, format);
}

/**
 * Whether `name`'s output is an attention query or key (`wq`, `wk`): its error reaches the output
 * through the softmax, so the clip search, which measures a linear's own output, skips it (as the
 * reference skips `q_`/`k_` projections).
 */
function feedsQueryOrKey(steps: readonly BlockStep[], name: LinearName): boolean {
  const step = steps.find((s) => s.op === "linear" && s.weight === name);
  const output = step && stepOutput(step);
  return steps.some((s) => s.op === "attention" && (s.q === output || s.k === output));
}

/**
 * Where a group's scales fold (the operation producing its input): `1/s` into an RMSNorm's
 * weight, or into the rows of the linear feeding the input through an operation that is linear
 * in it per channel (attention's values, SwiGLU's `up`). Undefined when nothing can take them.
 */
type Fold = { norm: NormName } | { linear: LinearName; through: "attention" | "swiglu" };

function foldOf(steps: readonly BlockStep[], input: BlockValue): Fold | undefined {
  const producer = steps[producerIndex(steps, input)];
  const linearWriting = (value: BlockValue) => {
    const s = steps.find((s) => s.op === "linear" && s.output === value);
    return s?.op === "linear" ? s.weight : undefined;
  };
  switch (producer?.op) {
    case "rmsnorm":
      return { norm: producer.weight };
    case "attention": {
      const linear = linearWriting(producer.v);
      return linear && { linear, through: "attention" };
    }
    case "swiglu": {
      const linear = linearWriting(producer.up);
      return linear && { linear, through: "swiglu" };
    }
    default:
      return undefined;
  }
}

/** A group's scale search, what it holds, and how its scales apply. */
export interface ScaleSearch {
  group: ScaleGroup;
  held: Float32Array[];
  apply(s: Float32Array): void;
  /** Frees what the search held on the GPU. */
  release?(): void;
}

/**
 * The scale searches of a layer's groups with what each inspects (see the module notes), and how
 * found scales apply to the float weights `w`, the norms and the captures; with `gpu`, their
 * losses are computed on the GPU, the modules run on those window kernels (`awq_webgpu.ts`).
 */
export function scaleGroups(
  layer: LayerContext,
  captures: Map<BlockValue, Float32Array[]>,
  w: Record<LinearName, DenseMatrix>,
  norms: Record<NormName, Float32Array>,
  gpu?: WindowKernels,
): ScaleSearch[] {
  const { steps, groups, block, original } = layer;
  const floatLayer: LayerWeights = { ...original, ...w };
  return groups.flatMap(({ names, input }, g): ScaleSearch[] => {
    const fold = foldOf(steps, input);
    const first = w[names[0]!];
    // Through attention, only when the value projection and the group's linear have the same
    // shape (the reference's check: not with grouped-query attention).
    if (
      fold === undefined ||
      ("linear" in fold && fold.through === "attention" &&
        !(w[fold.linear].rows === first.rows && w[fold.linear].cols === first.cols))
    ) return [];
    const inputs = captures.get(input)!;
    const apply = (s: Float32Array) => {
      if ("norm" in fold) {
        const norm = norms[fold.norm];
        for (let i = 0; i < s.length; i++) norm[i]! /= s[i]!;
      } else w[fold.linear] = scaleRows(w[fold.linear], s);
      for (const n of names) w[n] = scaleCols(w[n], s);
      divideInputs(inputs, s);
    };
    const start = firstReader(steps, input);
    const output = stepOutputOf(steps, names[0]!);
    const lone = names.length === 1 &&
      steps.some((s) => s.op === "add" && (s.a === output || s.b === output));
    if (lone && gpu) {
      const loss = lazyGpuLoss(() => gpuLoneLoss(names[0]!, w[names[0]!], inputs));
      return [{
        group: { names, inputs, loss: loss.loss },
        held: [],
        apply,
        release: loss.release,
      }];
    }
    if (lone) {
      // A linear feeding the residual stream alone: its error from the Gram matrix of its inputs.
      const name = names[0]!;
      const gram = packedGram(inputs, w[name].cols);
      return [{
        group: {
          names,
          inputs,
          loss: (r) => loneLinearError(r[name]!, w[name], gram, tokensOf(inputs, w[name].cols)),
        },
        held: [gram.panels],
        apply,
      }];
    }
    // The group's linears through to the next group's input, whose linear (in float) gives the
    // inspected output, compared with the float block's captured values.
    const next = groups[g + 1];
    if (next === undefined || next.names.length !== 1) return [];
    const end = producerIndex(steps, next.input) + 1;
    const expected = captures.get(next.input)!;
    if (gpu) {
      const loss = lazyGpuLoss(() =>
        gpuModuleLoss({
          block,
          windows: gpu,
          steps,
          layer: floatLayer,
          input,
          inputs,
          range: { from: start, to: end },
          output: next.input,
          expected,
          next: w[next.names[0]!],
        })
      );
      return [{
        group: { names, inputs, loss: loss.loss },
        held: [],
        apply,
        release: loss.release,
      }];
    }
    const nextW = packed(w[next.names[0]!]);
    return [{
      group: {
        names,
        inputs,
        loss: (r) => {
          const replaced = Object.fromEntries(names.map((n) => [n, packed(r[n]!)]));
          let sum = 0;
          inputs.forEach((x, i) => {
            const values: BlockValues = new Map([[input, x]]);
            const T = x.length / first.cols;
            block.run(steps, floatLayer, values, T, {
              from: start,
              to: end,
              kernels: searchKernels(block.config, replaced),
            });
            sum += sumOfSquares(nextW, values.get(next.input)!, expected[i]!);
          });
          return sum / (tokensOf(inputs, first.cols) * nextW.rows);
        },
      },
      held: [],
      apply,
    }];
  });
}

/** A GPU loss made on its first use, and a release of what it holds. */
function lazyGpuLoss(make: () => Promise<GpuLoss>): {
  loss(weights: Partial<Record<LinearName, DenseMatrix>>): Promise<number>;
  release(): void;
} {
  let made: Promise<GpuLoss> | undefined;
  return {
    loss: async (weights) => await (await (made ??= make())).loss(weights),
    release: () => void made?.then((m) => m.destroy()),
  };
}

/** The output of linear `name` in `steps`. */
function stepOutputOf(steps: readonly BlockStep[], name: LinearName): BlockValue | undefined {
  const s = steps.find((s) => s.op === "linear" && s.weight === name);
  return s && stepOutput(s);
}

/** The search kernels of `search_kernels.ts` in place of the CPU backend's, `replaced` linears packed. */
function searchKernels(
  config: LlamaConfig,
  replaced: Partial<Record<LinearName, PackedRows>>,
): Partial<BlockKernels> {
  return {
    linear(x, name) {
      const w = replaced[name];
      if (w === undefined) throw new RangeError(`Linear "${name}" is not packed for the search`);
      const out = new Float32Array((x.length / w.cols) * w.rows);
      gemm(out, x, w);
      return out;
    },
    attention(q, k, v) {
      const out = new Float32Array(q.length);
      causalAttention(out, q, k, v, config.nHeads, config.nKvHeads, config.headDim);
      return out;
    },
    swiglu: siluMul,
  };
}

/** `W·diag(s)` of a dense matrix. */
function scaleCols(m: DenseMatrix, s: Float32Array): DenseMatrix {
  return dense(m.rows, m.cols, scaleColumns(m.data, m.cols, s));
}

/** `diag(s)⁻¹·W`: the last `s.length` rows divided by `s` (`scale_fc_fc`). */
function scaleRows(m: DenseMatrix, s: Float32Array): DenseMatrix {
  const first = m.rows - s.length;
  return dense(
    m.rows,
    m.cols,
    m.data.map((v, k) => {
      const r = Math.floor(k / m.cols);
      return r < first ? v : v / s[r - first]!;
    }),
  );
}

/** AWQ: activation-aware per-channel scaling and clipping, then the format's rounding. */
export const awq: Method = {
  name: "awq",
  description: "AWQ (activation-aware scale and clip search) into any quantized format",
  options: AWQ_OPTIONS,
  unsupported,
  checkOptions: (options) => void calibrationDevice("awq", options.device),
  quantize: quantizeModel,
};
