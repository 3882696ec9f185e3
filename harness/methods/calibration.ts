/**
 * Calibration data for the methods that need it (GPTQ, AWQ, SmoothQuant): windows of a suite
 * dataset, and a transformer block run over them (its steps interpreted, with taps on any value
 * between them; `sequential.ts` drives the layers).
 *
 * - Windows: the dataset's text is tokenized once without BOS (as the `gptq` perplexity protocol
 *   does), and `samples` windows of `seq_len` tokens start at positions drawn uniformly from
 *   `[0, n − seq_len)` with the suite seed — the draw of the GPTQ reference's `get_wikitext2`
 *   (`random.randint(0, n − seqlen − 1)`), from quantbench's seeded generator.
 * - Layers are processed one at a time: the methods hold the hidden states of all windows at the
 *   input of the current layer (`samples × seq_len × dim` floats) and what they capture inside
 *   it, never the whole model's activations, so memory is bounded by one layer.
 * - {@linkcode CalibrationBlock} computes a block exactly as the CPU backend does (same kernels,
 *   same order), so a float model's calibration inputs equal what the runner sees.
 *
 * @module
 */
import type {
  LayerWeights,
  LinearName,
  LlamaConfig,
  LlamaModel,
  LlamaWeights,
  Matrix,
} from "../../core/model.ts";
import type { DatasetSpec } from "../../core/suite_types.ts";
import type { MethodContext } from "./method.ts";
import { type RopeAngles, ropeAngles } from "../../kernels/cpu/ops.ts";
import {
  type BlockKernels,
  type BlockValues,
  cpuBlockKernels,
  runBlock,
} from "../../kernels/cpu/block_interpreter.ts";
import {
  BLOCK_OUTPUT,
  blockShape,
  type BlockStep,
  blockSteps,
  type BlockValue,
  type HeadGroup,
  stepInputs,
  stepOutput,
} from "../../core/graph.ts";
import { ropeInverseFrequencies } from "../../core/rope.ts";
import { readText } from "../../core/dataset.ts";
import { randomInt, seededRandom } from "../../core/random.ts";

/** Thrown when a method cannot get the calibration data it needs. */
export class CalibrationError extends Error {
  override name = "CalibrationError";
}

/** A method's `calibration` option as the suite loader fills it in. */
export interface CalibrationOption {
  /** Dataset id from the suite's `datasets`. */
  dataset: string;
  samples: number;
  seq_len: number;
}

/** Calibration settings resolved against the suite and the model. */
export interface Calibration {
  dataset: DatasetSpec;
  samples: number;
  /** Tokens per window (the model's maximum when the option asks for more). */
  seqLen: number;
}

/** Resolves a method's `calibration` option; throws {@linkcode CalibrationError} when unusable. */
export function resolveCalibration(
  method: string,
  option: unknown,
  ctx: MethodContext,
  maxSeqLen: number,
): Calibration {
  const { dataset, samples, seq_len: seqLen } = (option ?? {}) as Partial<CalibrationOption>;
  if (typeof dataset !== "string" || dataset === "") {
    throw new CalibrationError(
      `Method "${method}" needs calibration data: add calibration: { dataset: <id> } naming a ` +
        `text dataset of the suite`,
    );
  }
  const spec = ctx.datasets?.[dataset];
  if (spec === undefined) {
    throw new CalibrationError(`Calibration dataset "${dataset}" is not defined in the suite`);
  }
  if (spec.kind !== "text") {
    throw new CalibrationError(`Calibration dataset "${dataset}" is ${spec.kind}; use a text one`);
  }
  if (!(Number.isInteger(samples) && samples! >= 1 && Number.isInteger(seqLen) && seqLen! >= 2)) {
    throw new CalibrationError(
      `Calibration needs samples ≥ 1 and seq_len ≥ 2, got ${samples} and ${seqLen}`,
    );
  }
  return { dataset: spec, samples: samples!, seqLen: Math.min(seqLen!, maxSeqLen) };
}

/** The token windows of a calibration set (see the module notes). */
export async function calibrationWindows(
  model: LlamaModel,
  calibration: Calibration,
  seed: number,
): Promise<number[][]> {
  const { dataset, samples, seqLen } = calibration;
  const ids = model.tokenizer.encode(await readText(dataset));
  if (ids.length <= seqLen) {
    throw new CalibrationError(
      `Calibration dataset "${dataset.id}" has ${ids.length} tokens; windows of ${seqLen} need ` +
        `more`,
    );
  }
  const random = seededRandom(seed, `calibration/${dataset.id}`);
  return Array.from({ length: samples }, () => {
    const start = randomInt(random, ids.length - seqLen);
    return ids.slice(start, start + seqLen);
  });
}

/** Token embeddings of each window: the hidden states at the input of layer 0. */
export function embed(model: LlamaModel, windows: number[][]): Float32Array[] {
  const { dim } = model.config;
  return windows.map((ids) => {
    const x = new Float32Array(ids.length * dim);
    ids.forEach((id, t) => {
      x.set(model.weights.tokenEmbedding.subarray(id * dim, (id + 1) * dim), t * dim);
    });
    return x;
  });
}

/**
 * A model's transformer blocks run over calibration windows: one sequence of `T` tokens at
 * positions `0 … T−1` (rows of `x`), the block's steps (`core/graph.ts`) interpreted as
 * `CpuRunner.forward` interprets them (same kernels, same order), optionally only a range of
 * them, resuming from the values an earlier range left, and with kernels replaced (the searches
 * that re-run part of a block many times use faster ones).
 */
export class CalibrationBlock {
  readonly config: LlamaConfig;
  readonly #invFreq: Float64Array;
  /** RoPE's angles per sequence length: blocks run many times over sequences of a few lengths. */
  readonly #angles = new Map<number, RopeAngles>();

  constructor(config: LlamaConfig) {
    this.config = config;
    this.#invFreq = ropeInverseFrequencies(config);
  }

  /** The CPU backend's kernels for `T` tokens at positions `0 … T−1`. */
  kernels(T: number): BlockKernels {
    let angles = this.#angles.get(T);
    if (angles === undefined) this.#angles.set(T, angles = ropeAngles(T, 0, this.#invFreq));
    return cpuBlockKernels(this.config, 0, T, { angles });
  }

  /**
   * Runs the steps `[from, to)` (default all) of `layer` over the `T` tokens of `values` (which
   * hold what those steps read: `x` for a whole block), on the CPU kernels with `kernels`
   * swapped in.
   */
  run(
    steps: readonly BlockStep[],
    layer: LayerWeights,
    values: BlockValues,
    T: number,
    range: BlockRange = {},
  ): void {
    const { from = 0, to = steps.length, kernels = {} } = range;
    runBlock(steps, layer, this.config, values, { ...this.kernels(T), ...kernels }, from, to);
  }

  /** The whole block over `x`: its output. */
  forward(layer: LayerWeights, x: Float32Array): Float32Array {
    const values: BlockValues = new Map([["x", x]]);
    this.run(blockSteps(blockShape(layer)), layer, values, x.length / this.config.dim);
    return values.get(BLOCK_OUTPUT)!;
  }
}

/**
 * The kernels of a block over every calibration window at once, where a device runs them
 * (`device: webgpu`): each returns one array per window, as the CPU kernel would. The optional
 * steps (`rmsnorm`, `add`, `rope`, `headNorm`, `bias`) let a device run the whole block; kernels that have them may
 * keep results on the device only, returning arrays that are not written until
 * {@linkcode WindowKernels.read} (a reader on the host asks for them first, see
 * {@linkcode runWindows}).
 */
export interface WindowKernels {
  /** `x · Wᵀ` of the linear `name` (no bias) for each window's rows `xs`. */
  linear(xs: Float32Array[], name: LinearName, layer: LayerWeights): Promise<Float32Array[]>;
  /** Causal attention of each window (position 0) over its own keys and values. */
  attention(qs: Float32Array[], ks: Float32Array[], vs: Float32Array[]): Promise<Float32Array[]>;
  /**
   * SwiGLU's gate and up linears (no biases) and the SwiGLU after them as one:
   * `silu(x·Gᵀ) · (x·Uᵀ)` for each window's rows `xs`. Optional; without it they run as three
   * steps.
   */
  gated?(
    xs: Float32Array[],
    gate: LinearName,
    up: LinearName,
    layer: LayerWeights,
  ): Promise<Float32Array[]>;
  /** RMSNorm of each window's rows with `weight` (the model's eps). Optional, as are the next. */
  rmsnorm?(xs: Float32Array[], weight: Float32Array): Promise<Float32Array[]>;
  /** The residual add `a + b` of each window. */
  add?(as: Float32Array[], bs: Float32Array[]): Promise<Float32Array[]>;
  /** RoPE in place of each window's queries or keys (the model's style, theta and heads). */
  rope?(xs: Float32Array[], heads: HeadGroup): Promise<void>;
  /** In place RMSNorm of each head of each window's queries or keys with `weight`. */
  headNorm?(xs: Float32Array[], weight: Float32Array): Promise<void>;
  /** In place `x += bias` on every row of each window (a linear's bias). */
  bias?(xs: Float32Array[], bias: Float32Array): Promise<void>;
  /** Makes the host arrays `xs` current where the device alone held their values. */
  read?(xs: Float32Array[]): Promise<void>;
  /**
   * Frees what the device holds of values other than `live` (the driver's values still read,
   * and its layer input).
   */
  retain?(live: Iterable<Float32Array>): void;
  /**
   * Told the seconds each step left to the CPU took over all windows (for profiles), after it
   * ran, and the arrays it rewrote in place (what a device holds of them is stale).
   */
  cpuStep?(op: BlockStep["op"], seconds: number, rewritten: Float32Array[]): void;
  /**
   * Drops what the device holds of the windows' values: called before they go to code that may
   * rewrite them in place (AWQ divides its captures by the scales it finds), after reading what
   * is still needed.
   */
  forget?(): void;
  /**
   * Frees what the kernels keep on the device between calls (buffers reused layer after layer);
   * a later call makes it again. `quantizeLayers` calls it when the last layer is done.
   */
  release?(): void;
}

/**
 * The SwiGLU output written by steps `i … i+2` when they are a gate and an up linear over one
 * input without biases and the SwiGLU of their outputs, which no step after reads; else
 * undefined.
 */
function gatedAt(steps: readonly BlockStep[], i: number, to: number): BlockValue | undefined {
  const [g, u, sw] = [steps[i], steps[i + 1], steps[i + 2]];
  if (i + 3 > to || g?.op !== "linear" || u?.op !== "linear" || sw?.op !== "swiglu") return;
  if (g.input !== u.input || g.bias || u.bias || sw.gate !== g.output || sw.up !== u.output) {
    return;
  }
  const later = new Set(steps.slice(i + 3).flatMap(stepInputs));
  return later.has(g.output) || later.has(u.output) ? undefined : sw.output;
}

/** The values a CPU step rewrites in place (`block_interpreter.ts`; SwiGLU writes over `gate`). */
function rewrittenBy(s: BlockStep): BlockValue[] {
  switch (s.op) {
    case "head_rmsnorm":
    case "rope":
    case "hadamard":
      return [s.value];
    case "swiglu":
      return [s.gate];
    default:
      return [];
  }
}

/**
 * Runs the steps `[from, to)` of `layer` over every window (`values[i]` of `tokens[i]` tokens):
 * step by step, all windows at once on `windows` where it has the step (the linears and attention
 * always; a gate, up and SwiGLU triple at once where it has `gated`; norms, RoPE, adds, head
 * norms and biases where it has them), the other steps window by window on the CPU's, after
 * `windows.read` of what they read (the results a window-by-window
 * {@linkcode CalibrationBlock.run} gives, up to the rounding of the device's kernels). Hadamard
 * transforms always run on the CPU.
 */
export async function runWindows(
  block: CalibrationBlock,
  windows: WindowKernels,
  steps: readonly BlockStep[],
  layer: LayerWeights,
  values: BlockValues[],
  tokens: number[],
  range: { from: number; to: number },
): Promise<void> {
  for (let i = range.from; i < range.to; i++) {
    const s = steps[i]!;
    const all = (name: BlockValue) => values.map((v) => v.get(name)!);
    const set = (name: BlockValue, outs: Float32Array[]) =>
      values.forEach((v, w) => v.set(name, outs[w]!));
    const fused = windows.gated && gatedAt(steps, i, range.to);
    if (fused && s.op === "linear") {
      const up = steps[i + 1] as Extract<BlockStep, { op: "linear" }>;
      // The SwiGLU's output; the gate and up values, which no later step reads, are never held.
      set(fused, await windows.gated!(all(s.input), s.weight, up.weight, layer));
      i += 2;
      continue;
    }
    if (s.op === "rmsnorm" && windows.rmsnorm) {
      set(s.output, await windows.rmsnorm(all(s.input), layer[s.weight]));
      continue;
    }
    if (s.op === "add" && windows.add) {
      set(s.output, await windows.add(all(s.a), all(s.b)));
      continue;
    }
    if (s.op === "rope" && windows.rope) {
      await windows.rope(all(s.value), s.heads);
      continue;
    }
    if (s.op === "head_rmsnorm" && windows.headNorm) {
      await windows.headNorm(all(s.value), layer[s.weight]!);
      continue;
    }
    let done: Float32Array[] | undefined;
    if (s.op === "linear") done = await windows.linear(all(s.input), s.weight, layer);
    if (s.op === "attention") done = await windows.attention(all(s.q), all(s.k), all(s.v));
    const biasName = s.op === "linear" ? s.bias : undefined;
    if (done !== undefined && biasName !== undefined && windows.bias) {
      await windows.bias(done, layer[biasName]!);
    }
    // What the CPU reads and rewrites: a bias the device did not add goes onto its product here.
    const bias = biasName !== undefined && !windows.bias;
    const host = done === undefined ? stepInputs(s).flatMap(all) : bias ? done : [];
    if (host.length > 0) await windows.read?.(host);
    if (done !== undefined && !bias) {
      set(stepOutput(s), done);
      continue;
    }
    // Taken before the step: SwiGLU's output replaces its gate in the map.
    const rewritten = bias ? done! : rewrittenBy(s).flatMap(all);
    const t = performance.now();
    values.forEach((v, w) => {
      const kernels: Partial<BlockKernels> = done === undefined
        ? {}
        : s.op === "linear"
        ? { linear: () => done[w]! }
        : { attention: () => done[w]! };
      block.run(steps, layer, v, tokens[w]!, { from: i, to: i + 1, kernels });
    });
    windows.cpuStep?.(s.op, (performance.now() - t) / 1000, rewritten);
  }
}

/** Which steps {@linkcode CalibrationBlock.run} runs, and on which kernels. */
export interface BlockRange {
  /** First step (default 0). */
  from?: number;
  /** Step after the last (default the block's end). */
  to?: number;
  /** Kernels replacing the CPU backend's. */
  kernels?: Partial<BlockKernels>;
}

/**
 * Peak memory of a quantization, counted from the buffers held (weights, hidden states, captured
 * inputs, Hessians, quantized weights) rather than sampled from the process's RSS, so the figure
 * repeats from run to run and belongs to one cell (cells run in worker threads of one process).
 */
export class MemoryMeter {
  #now = 0;
  #peak = 0;

  /** Counts buffers as held; returns their bytes. */
  hold(...buffers: (ArrayBufferView | ArrayBufferView[])[]): number {
    const bytes = buffers.flat().reduce((s, b) => s + b.byteLength, 0);
    this.#now += bytes;
    this.#peak = Math.max(this.#peak, this.#now);
    return bytes;
  }

  /** Counts `bytes` as released. */
  release(bytes: number): void {
    this.#now -= bytes;
  }

  /** The most bytes held at once. */
  get peak(): number {
    return this.#peak;
  }
}

/** The typed arrays a matrix's storage is made of (for {@linkcode MemoryMeter}). */
export function matrixBuffers(m: Matrix): ArrayBufferView[] {
  switch (m.kind) {
    case "dense":
      return [m.data];
    case "int":
      return m.zeros ? [m.codes, m.scales, m.zeros] : [m.codes, m.scales];
    case "coded":
      return [m.data];
  }
}

/** The typed arrays of a layer: its matrices' storage, norms and biases. */
export function layerBuffers(layer: LayerWeights): ArrayBufferView[] {
  // `hadamard` names run-time transforms; it holds no buffer.
  const { hadamard: _, ...tensors } = layer;
  return Object.values(tensors).flatMap((v: Matrix | Float32Array | undefined) =>
    v === undefined ? [] : v instanceof Float32Array ? [v] : matrixBuffers(v)
  );
}

/** The distinct typed arrays of a model's weights (a tied classifier shares the embedding's). */
export function weightBuffers(weights: LlamaWeights): ArrayBufferView[] {
  return [
    ...new Set([
      weights.tokenEmbedding,
      ...weights.layers.flatMap(layerBuffers),
      weights.finalNorm,
      ...matrixBuffers(weights.output),
    ]),
  ];
}

/** Bytes of the distinct typed arrays a model's weights hold in memory. */
export function weightBytes(weights: LlamaWeights): number {
  return weightBuffers(weights).reduce((n, b) => n + b.byteLength, 0);
}
