/**
 * GPTQ with its heavy arithmetic on a WebGPU device (the method option `device: webgpu`): the
 * Hessian `H = 2/N · Σ xxᵀ` accumulates there (`kernels/webgpu/gram.ts`, float32 sums; the
 * scaling by `2/N` in float64 here, as `gptq.ts` does), and the column loop keeps the weights
 * there, where the update of the columns after each block — `rows · cols² / 2` multiply-adds
 * against the block's `rows · cols · block_size / 2` — runs as a GEMM
 * (`kernels/webgpu/gptq_columns.ts`). For integer formats the blocks are quantized there as
 * well (`kernels/webgpu/gptq_blocks.ts`: one dispatch per block fits free groups, rounds,
 * and spreads each column's error over the block in float32 with float64's rounding
 * decisions), and codes, scales and zero points come back once per matrix. For other formats
 * each block's columns are read back and quantized here in float64 by the same code as the CPU
 * path (`gptqBlock`), on the format's own grid, so every format with a grid works and group
 * parameters are fitted exactly where the CPU fits them. The
 * Cholesky factor `U` of `H⁻¹`, computed once per group of linears, is the CPU's float64 one
 * below {@linkcode GPU_FACTOR_MIN_COLS} columns and the GPU's float32 one from there
 * (`kernels/webgpu/gptq_factor.ts`: the CPU's takes minutes at 5632); there the Hessian's
 * float32 sums go straight into the factor's damped float32 input ({@linkcode gpuGroupFactor})
 * and `U` stays float32.
 *
 * The calibration forward runs there too, all windows at once ({@linkcode gpuWindowKernels}):
 * the linears, SwiGLU (with the gate and up linears), attention, RMSNorm, RoPE and the residual
 * adds, with the windows' hidden states and every value between the steps kept on the device
 * (`kernels/webgpu/window_inputs.ts`); a group's Hessian reads its input there, and the layer's
 * output stays there as the next layer's input. Nothing comes back but the Hessians.
 *
 * Results differ from the CPU path only by float32 rounding in the Hessian and in the updated
 * weights: a weight whose value lands within that rounding of a rounding boundary may take the
 * neighbouring code (on stories260K none does; f32 scales, which put a group's extreme weights
 * on exact ties, are the sensitive case).
 *
 * @module
 */
import { GpuGram } from "../../kernels/webgpu/gram.ts";
import { GpuGptqColumns } from "../../kernels/webgpu/gptq_columns.ts";
import { gptqBlocksWebGpu } from "../../kernels/webgpu/gptq_blocks.ts";
import { gptqBlockUnsupported, type GptqIntGrid } from "../../kernels/webgpu/gptq_block_wgsl.ts";
import { elementFormats } from "../../kernels/formats/registry.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import type { GptqProfile } from "./gptq_profile.ts";
import { gpuInverseFactor } from "../../kernels/webgpu/gptq_factor.ts";
import { getGpu } from "../../kernels/webgpu/device.ts";
import {
  type DampPlan,
  dampPlan,
  gptqBlock,
  gptqBlockReach,
  type GptqFactor,
  gptqFactor,
  GptqOptionsError,
  type GptqResult,
  type GptqSettings,
  gptqWeights,
} from "./gptq_loop.ts";
import type { GroupGrid } from "./grid.ts";
import type { WindowKernels } from "./calibration.ts";
import type { LlamaConfig, Matrix } from "../../core/model.ts";
import { decodeRow } from "../../kernels/formats/matrix.ts";
import { BatchLinearScratch, GpuBatchLinear } from "../../kernels/webgpu/batch_linear.ts";
import { GpuWindowAttention } from "../../kernels/webgpu/batch_attention.ts";
import type { GpuWindowInputs } from "../../kernels/webgpu/window_inputs.ts";
import { GpuWindowSteps } from "../../kernels/webgpu/window_steps.ts";
import { ropeInverseFrequencies } from "../../core/rope.ts";
import { deviceChecked, type DeviceStepLabel } from "../../kernels/webgpu/device_checked.ts";

/**
 * Widths from which the factor is computed on the GPU in float32 (as PyTorch's reference does);
 * narrower Hessians keep the CPU's float64 factor, which takes seconds there.
 */
export const GPU_FACTOR_MIN_COLS = 1024;

/** Whether a `cols`-wide Hessian's factor is computed on the GPU. */
async function factorOnGpu(cols: number, minCols: number): Promise<boolean> {
  // A Hessian over one storage binding (14336 wide: 822 MB) keeps the CPU's factor.
  return cols >= minCols && cols * cols * 4 <= (await getGpu()).maxBinding;
}

/**
 * The damped Hessian (`dampedHessian` in `gptq_loop.ts`) as the GPU factor takes it: float32, its lower
 * triangle in quantization order, from `at(a, b)` = `H[a][b]` in the original order.
 */
function dampedLower32(
  cols: number,
  at: (a: number, b: number) => number,
  plan: DampPlan,
): Float32Array {
  const { perm, damp } = plan;
  const dead = new Uint8Array(cols);
  for (const i of plan.dead) dead[i] = 1;
  const out = new Float32Array(cols * cols);
  // Tile by tile: `at` may read the transposed triangle.
  const T = 64;
  for (let i0 = 0; i0 < cols; i0 += T) {
    for (let j0 = 0; j0 <= i0; j0 += T) {
      const [i1, j1] = [Math.min(cols, i0 + T), Math.min(cols, j0 + T)];
      for (let i = i0; i < i1; i++) {
        const a = perm ? perm[i]! : i;
        for (let j = j0; j < Math.min(j1, i); j++) out[i * cols + j] = at(a, perm ? perm[j]! : j);
        if (i < j1) out[i * cols + i] = (dead[a] ? 1 : at(a, a)) + damp;
      }
    }
  }
  return out;
}

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
  if (!(await factorOnGpu(cols, minCols))) return gptqFactor(h, cols, settings);
  const diag = Float64Array.from({ length: cols }, (_, i) => h[i * cols + i]!);
  const plan = dampPlan(diag, settings);
  const hh = dampedLower32(cols, (a, b) => h[a * cols + b]!, plan);
  return { hinv: await gpuInverseFactor(hh, cols), perm: plan.perm, dead: plan.dead };
}

/**
 * `H = 2/N · Σ xxᵀ` over the captured inputs `xs` (N = windows), summed on the GPU; read from
 * `store` (uploaded there unless held) when given.
 */
export async function gpuHessian(
  xs: Float32Array[],
  cols: number,
  store?: GpuWindowInputs,
): Promise<Float64Array> {
  const gram = await GpuGram.create(cols);
  try {
    for (const x of store ? store.get(xs) : xs) gram.add(x);
    const h = await gram.read();
    for (let i = 0; i < h.length; i++) h[i]! *= 2 / xs.length;
    return h;
  } finally {
    gram.destroy();
  }
}

/** A group's factor, and its Hessian where the factor was the CPU's. */
export interface GroupFactor {
  factor: GptqFactor;
  h?: Float64Array;
}

/**
 * The factor shared by a group of linears from their captured inputs `xs` (read from `store`
 * when given: the forward's linears then find them there): the Hessian summed on the GPU and,
 * from `minCols` columns on, damped here straight from the float32 sums into
 * the GPU factor's input, without a float64 copy — the same numbers as
 * {@linkcode gpuHessian} then {@linkcode gptqFactorWebGpu}, with fewer passes over `cols²`
 * values. A device out of memory for them throws a `DeviceStepError` naming the width.
 */
export async function gpuGroupFactor(
  xs: Float32Array[],
  cols: number,
  settings: GptqSettings,
  profile?: GptqProfile,
  minCols = GPU_FACTOR_MIN_COLS,
  store?: GpuWindowInputs,
): Promise<GroupFactor> {
  const gb = (bytes: number) => (bytes / 1e9).toFixed(2);
  return deviceChecked((await getGpu()).device, () => ({
    what: `the Hessian and factor of a ${cols}-column group over ${xs.length} windows ` +
      `(${gb(cols * cols * 4)} GB; ${gb(store?.bytes ?? 0)} GB of activations held on the device)`,
    advice: "use fewer calibration windows (calibration.samples) or shorter ones " +
      "(calibration.seq_len), or device: cpu",
  }), () => groupFactor(xs, cols, settings, profile, minCols, store));
}

/** {@linkcode gpuGroupFactor}'s work, inside its error scopes. */
async function groupFactor(
  xs: Float32Array[],
  cols: number,
  settings: GptqSettings,
  profile: GptqProfile | undefined,
  minCols: number,
  store: GpuWindowInputs | undefined,
): Promise<GroupFactor> {
  let t = performance.now();
  if (!(await factorOnGpu(cols, minCols))) {
    const h = await gpuHessian(xs, cols, store);
    if (profile) t = profile.add("hessian", t);
    const factor = gptqFactor(h, cols, settings);
    profile?.add("factor", t);
    return { factor, h };
  }
  const gram = await GpuGram.create(cols);
  let upper: Float32Array;
  try {
    for (const x of store ? store.get(xs) : xs) gram.add(x);
    upper = await gram.readUpper();
  } finally {
    gram.destroy();
  }
  // As gpuHessian scales: the float32 sum times 2/N in float64.
  const scale = 2 / xs.length;
  const diag = Float64Array.from({ length: cols }, (_, i) => upper[i * cols + i]! * scale);
  const plan = dampPlan(diag, settings);
  const hh = dampedLower32(
    cols,
    (a, b) => (a <= b ? upper[a * cols + b]! : upper[b * cols + a]!) * scale,
    plan,
  );
  if (profile) t = profile.add("hessian", t);
  const hinv = await gpuInverseFactor(hh, cols);
  profile?.add("factor", t);
  return { factor: { hinv, perm: plan.perm, dead: plan.dead } };
}

/** Where {@linkcode gptqQuantizeWebGpu} gets what the group already has. */
export interface GptqWebGpuOptions {
  /** The group's factor of `h`, when computed already. */
  factor?: GptqFactor;
  /**
   * The suite format `grid` rounds onto: an integer format's whole column loop runs on the
   * device (`kernels/webgpu/gptq_blocks.ts`); without it, or for other formats, each block is
   * read back and quantized here.
   */
  format?: FormatSpec;
  /** Adds the phases' seconds (`deviceLoop`, `hostLoop`, `prepare`) to a profile. */
  profile?: GptqProfile;
}

/**
 * The integer grid of `format` for the device loop, or undefined where the loop stays on the
 * host (other formats, blocks over the kernel's limit, a factor over the device's largest
 * buffer).
 */
export function deviceIntGrid(
  format: FormatSpec,
  settings: GptqSettings,
  groupSize: number,
  cols: number,
  maxBuffer: number,
): GptqIntGrid | undefined {
  const element = elementFormats.get(format.weights);
  if (element.kind !== "int" || cols * cols * 4 > maxBuffer) return undefined;
  const c = element.intConfig(format);
  const grid: GptqIntGrid = {
    bits: c.bits,
    symmetric: c.symmetric,
    restricted: c.restricted === true,
    scaleDtype: c.scaleDtype ?? "f16",
    fit: groupSize < cols && !settings.staticGroups,
    block: settings.blockSize,
  };
  return gptqBlockUnsupported(grid) === undefined ? grid : undefined;
}

/**
 * GPTQ of one `rows × cols` weight matrix `w0` given the Hessian `h` (or the group's factor of
 * it) into the format of `grid`, with the block updates on the GPU (see the module notes).
 */
export async function gptqQuantizeWebGpu(
  w0: Float64Array,
  h: Float64Array | undefined,
  rows: number,
  cols: number,
  grid: GroupGrid,
  settings: GptqSettings,
  options: GptqWebGpuOptions = {},
): Promise<GptqResult> {
  const { profile } = options;
  if (!options.factor && !h) {
    throw new GptqOptionsError("GPTQ on the GPU needs the Hessian or its factor");
  }
  const f = options.factor ?? await gptqFactorWebGpu(h!, cols, settings);
  let t = performance.now();
  const hw = gptqWeights(w0, rows, cols, grid, settings, f);
  const gpu = await getGpu();
  const intGrid = options.format &&
    deviceIntGrid(options.format, settings, grid.groupSize, cols, gpu.adapter.maxBufferSize);
  if (profile) t = profile.add("prepare", t);
  if (intGrid) {
    // The parameters init and static groups fixed; the device fits free groups and rounds.
    const m = grid.build();
    if (m.kind !== "int") throw new GptqOptionsError(`An integer format built a ${m.kind} matrix`);
    const zeros = m.zeros ?? new Uint8Array(m.scales.length).fill(1 << (m.bits - 1));
    const out = await gptqBlocksWebGpu({
      w: hw,
      u: f.hinv,
      rows,
      cols,
      perm: f.perm,
      groupSize: grid.groupSize,
      blockSize: settings.blockSize,
      scales: m.scales,
      zeros,
    }, intGrid);
    m.codes.set(out.codes);
    m.scales.set(out.scales);
    zeros.set(out.zeros);
    // The values the CPU grid's `round` returns: scale · (code − zero) in float64.
    const q = new Float64Array(rows * cols);
    const groups = m.scales.length / rows;
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < groups; g++) {
        const [scale, zero] = [m.scales[r * groups + g]!, zeros[r * groups + g]!];
        const end = Math.min(cols, (g + 1) * m.groupSize);
        for (let c = g * m.groupSize; c < end; c++) {
          q[r * cols + c] = scale * (m.codes[r * cols + c]! - zero);
        }
      }
    }
    profile?.add("deviceLoop", t);
    return { matrix: m, q, loss: out.loss };
  }
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
    profile?.add("hostLoop", t);
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
 * What a step of the calibration forward on the GPU is, for the error when the device runs out of
 * memory or refuses it (`device_checked.ts`): the step, the windows (count and longest, from
 * `xs`: tokens of `width` values, or values where rows are not tokens), the model's widths, and
 * the activations `held` on the device (bytes).
 */
export function forwardStepLabel(
  config: LlamaConfig,
  op: string,
  xs: readonly Float32Array[],
  width: number | undefined,
  held: number,
): DeviceStepLabel {
  const longest = Math.max(0, ...xs.map((x) => x.length / (width ?? 1)));
  const size = width === undefined ? `${longest} values` : `${longest} tokens`;
  const gb = (held / 1e9).toFixed(2);
  return {
    what: `the calibration forward's ${op} over ${xs.length} windows of up to ${size} ` +
      `(hidden ${config.dim}, intermediate ${config.hiddenDim}, ${config.nHeads}/` +
      `${config.nKvHeads} heads; ${gb} GB of activations held on the device)`,
    advice: "the forward keeps every window's activations on the device at once; use fewer " +
      "calibration windows (calibration.samples) or shorter ones (calibration.seq_len), or " +
      "device: cpu",
  };
}

/**
 * The calibration forward over all windows at once on the GPU (`kernels/webgpu/batch_linear.ts`,
 * `batch_attention.ts`). Attention keeps its buffers and recorded dispatches, and the linears
 * their chunk buffers, from layer to layer until {@linkcode WindowKernels.release}.
 *
 * With `store`, the whole block runs there (RMSNorm, RoPE, the residual adds, biases and head
 * norms too: `kernels/webgpu/window_steps.ts`) and every value stays on the device
 * (`kernels/webgpu/window_inputs.ts`): the arrays the kernels return are not written until
 * {@linkcode WindowKernels.read} asks for them, and a linear's input goes up, if at all, once for
 * every reader (the linears sharing it, GPTQ's Hessian given the same store). What the CPU still
 * runs (a rotated model's Hadamard transforms) is read back first; what it rewrites is dropped
 * from the device. Without `store` every result comes back and the other steps stay on the CPU
 * (the searches' kernels, whose inputs the methods rescale in place).
 */
export function gpuWindowKernels(
  config: LlamaConfig,
  profile?: GptqProfile,
  store?: GpuWindowInputs,
): WindowKernels {
  let attention: GpuWindowAttention | undefined;
  let scratch: BatchLinearScratch | undefined;
  let steps: GpuWindowSteps | undefined;
  const produce = store && ((outs: Float32Array[]) => store.produce(outs));
  const readBack = store === undefined;
  const scratchOf = async () => scratch ??= new BatchLinearScratch((await getGpu()).device);
  const stepsOf = async () =>
    steps ??= new GpuWindowSteps(await getGpu(), ropeInverseFrequencies(config));
  // A step the device cannot hold or refuses throws, naming itself (`device_checked.ts`), rather
  // than leaving its outputs silently zero.
  const checked = async <T>(
    op: string,
    xs: Float32Array[],
    width: number | undefined,
    run: () => Promise<T>,
  ) =>
    deviceChecked(
      (await getGpu()).device,
      () => forwardStepLabel(config, op, xs, width, store?.bytes ?? 0),
      run,
    );
  const kernels: WindowKernels = {
    linear(xs, name, layer) {
      return checked(`linear ${name}`, xs, layer[name].cols, async () => {
        const t = performance.now();
        const m = layer[name];
        const linear = await GpuBatchLinear.create(decode32(m), m.rows, m.cols);
        try {
          return await linear.apply(store ? store.get(xs) : xs, undefined, {
            keep: produce,
            readBack,
            scratch: await scratchOf(),
          });
        } finally {
          linear.destroy();
          profile?.add("forwardLinear", t);
        }
      });
    },
    gated(xs, gateName, upName, layer) {
      return checked(
        `gated linears ${gateName} and ${upName}`,
        xs,
        layer[gateName].cols,
        async () => {
          const t = performance.now();
          const [g, u] = [layer[gateName], layer[upName]];
          const gate = await GpuBatchLinear.create(decode32(g), g.rows, g.cols);
          const up = await GpuBatchLinear.create(decode32(u), u.rows, u.cols);
          try {
            return await gate.applyGated(store ? store.get(xs) : xs, up, undefined, {
              keep: produce,
              readBack,
              scratch: await scratchOf(),
            });
          } finally {
            gate.destroy();
            up.destroy();
            profile?.add("forwardGated", t);
          }
        },
      );
    },
    attention(qs, ks, vs) {
      return checked("attention", qs, config.nHeads * config.headDim, async () => {
        const t = performance.now();
        attention ??= new GpuWindowAttention({
          nHeads: config.nHeads,
          nKvHeads: config.nKvHeads,
          headDim: config.headDim,
        }, await getGpu());
        const [q, k, v] = store ? [store.get(qs), store.get(ks), store.get(vs)] : [qs, ks, vs];
        const windows = q.map((qw, i) => ({ q: qw, k: k[i]!, v: v[i]! }));
        const out = await attention.run(windows, produce, readBack);
        profile?.add("forwardAttention", t);
        return out;
      });
    },
    cpuStep(op, seconds, rewritten) {
      store?.written(rewritten);
      profile?.addSeconds(`cpu:${op}`, seconds);
    },
    forget() {
      store?.clear();
    },
    release() {
      attention?.destroy();
      attention = undefined;
      scratch?.destroy();
      scratch = undefined;
      steps?.destroy();
      steps = undefined;
      store?.clear();
    },
  };
  if (!store) return kernels;
  const fresh = (xs: Float32Array[], width: number) =>
    xs.map((x) => new Float32Array((x.length / config.dim) * width));
  return {
    ...kernels,
    rmsnorm(xs, weight) {
      return checked("RMSNorm", xs, config.dim, async () => {
        const t = performance.now();
        const outs = fresh(xs, config.dim);
        await (await stepsOf()).rmsnorm(store.get(xs), store.produce(outs), weight, config.normEps);
        profile?.add("forwardNorm", t);
        return outs;
      });
    },
    add(as, bs) {
      return checked("residual add", as, config.dim, async () => {
        const t = performance.now();
        const outs = fresh(as, config.dim);
        await (await stepsOf()).add(store.get(as), store.get(bs), store.produce(outs), config.dim);
        profile?.add("forwardAdd", t);
        return outs;
      });
    },
    rope(xs, heads) {
      return checked(
        `RoPE of the ${heads === "query" ? "queries" : "keys"}`,
        xs,
        (heads === "query" ? config.nHeads : config.nKvHeads) * config.headDim,
        async () => {
          const t = performance.now();
          const nHeads = heads === "query" ? config.nHeads : config.nKvHeads;
          const buffers = store.get(xs);
          await (await stepsOf()).rope(buffers, {
            nHeads,
            headDim: config.headDim,
            style: config.ropeStyle,
          });
          store.rewritten(xs);
          profile?.add("forwardRope", t);
        },
      );
    },
    headNorm(xs, weight) {
      return checked(
        "head norm",
        xs,
        undefined,
        async () => {
          const t = performance.now();
          await (await stepsOf()).headNorm(store.get(xs), weight, config.normEps);
          store.rewritten(xs);
          profile?.add("forwardHeadNorm", t);
        },
      );
    },
    bias(xs, bias) {
      return checked("bias", xs, bias.length, async () => {
        const t = performance.now();
        await (await stepsOf()).bias(store.get(xs), bias);
        store.rewritten(xs);
        profile?.add("forwardBias", t);
      });
    },
    async read(xs) {
      const t = performance.now();
      await store.read(xs);
      profile?.add("readBack", t);
    },
    retain(live) {
      store.retain(live);
    },
  };
}
