/**
 * Calibration data for the methods that need it (GPTQ, AWQ, SmoothQuant): windows of a suite
 * dataset, and a transformer block split into the pieces whose inputs the methods capture.
 *
 * - Windows: the dataset's text is tokenized once without BOS (as the `gptq` perplexity protocol
 *   does), and `samples` windows of `seq_len` tokens start at positions drawn uniformly from
 *   `[0, n − seq_len)` with the suite seed — the draw of the GPTQ reference's `get_wikitext2`
 *   (`random.randint(0, n − seqlen − 1)`), from quantbench's seeded generator.
 * - Layers are processed one at a time: the methods hold the hidden states of all windows at the
 *   input of the current layer (`samples × seq_len × dim` floats) and what they capture inside
 *   it, never the whole model's activations, so memory is bounded by one layer.
 * - {@linkcode BlockPieces} computes a block exactly as the CPU backend does (same kernels, same
 *   order), so a float model's calibration inputs equal what the runner sees.
 *
 * @module
 */
import type { LayerWeights, LlamaConfig, LlamaModel, Matrix } from "../../core/model.ts";
import type { DatasetSpec } from "../../core/suite_types.ts";
import type { MethodContext } from "./method.ts";
import {
  attention,
  matmul,
  rmsnorm,
  type RopeAngles,
  ropeAngles,
  rotate,
  swiglu,
} from "../../kernels/cpu/ops.ts";
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

/** `y = W·x (+ bias)` for the rows of `x`. */
export function linear(w: Matrix, x: Float32Array, bias?: Float32Array): Float32Array {
  const out = new Float32Array((x.length / w.cols) * w.rows);
  matmul(out, x, w);
  if (bias) addBias(out, bias);
  return out;
}

/** Adds `bias` to every row of `out` (rows of `bias.length`), in place. */
export function addBias(out: Float32Array, bias: Float32Array): void {
  for (let base = 0; base < out.length; base += bias.length) {
    for (let i = 0; i < bias.length; i++) out[base + i]! += bias[i]!;
  }
}

/** `a + b`, elementwise into a new array (float32 rounding, as the runner's residual adds). */
export function added(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! + b[i]!;
  return out;
}

/** Causal grouped-query attention of `T` tokens at positions `0 … T−1` into `out`. */
export type CausalAttention = (
  out: Float32Array,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  nHeads: number,
  nKvHeads: number,
  headDim: number,
) => void;

/** The CPU backend's attention kernel as a {@linkcode CausalAttention}. */
const cpuCausalAttention: CausalAttention = (out, q, k, v, nHeads, nKvHeads, headDim) =>
  attention(out, q, k, v, 0, nHeads, nKvHeads, headDim);

/**
 * One transformer block of a model split at every linear's input, over one sequence of `T` tokens
 * at positions `0 … T−1` (rows of `x`), computed as `CpuRunner.forward` computes it.
 */
export class BlockPieces {
  readonly config: LlamaConfig;
  readonly #invFreq: Float64Array;
  /** RoPE's angles per sequence length: blocks run many times over sequences of a few lengths. */
  readonly #angles = new Map<number, RopeAngles>();

  constructor(config: LlamaConfig) {
    this.config = config;
    this.#invFreq = ropeInverseFrequencies(config);
  }

  /** RMSNorm before attention: the input of `wq`, `wk`, `wv`. */
  attnInput(layer: LayerWeights, x: Float32Array): Float32Array {
    const out = new Float32Array(x.length);
    rmsnorm(out, x, layer.attnNorm, this.config.normEps);
    return out;
  }

  /** Attention over the projections of `xb`: the input of `wo`. */
  attention(layer: LayerWeights, xb: Float32Array): Float32Array {
    return this.attend(
      layer,
      linear(layer.wq, xb, layer.bq),
      linear(layer.wk, xb, layer.bk),
      linear(layer.wv, xb, layer.bv),
    );
  }

  /**
   * Attention from the projections `q`, `k`, `v` (biases added): the layer's q/k norms, RoPE at
   * positions `0 … T−1`, then causal attention by `kernel` (default the CPU backend's), which
   * searches that re-run the block many times replace with a faster one. Normalizes `q` and `k`
   * in place.
   */
  attend(
    layer: LayerWeights,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    kernel: CausalAttention = cpuCausalAttention,
  ): Float32Array {
    const c = this.config;
    if (layer.qNorm) rmsnorm(q, q, layer.qNorm, c.normEps);
    if (layer.kNorm) rmsnorm(k, k, layer.kNorm, c.normEps);
    const T = q.length / (c.nHeads * c.headDim);
    let angles = this.#angles.get(T);
    if (angles === undefined) this.#angles.set(T, angles = ropeAngles(T, 0, this.#invFreq));
    rotate(q, c.nHeads, c.headDim, c.ropeStyle, angles);
    rotate(k, c.nKvHeads, c.headDim, c.ropeStyle, angles);
    const att = new Float32Array(q.length);
    kernel(att, q, k, v, c.nHeads, c.nKvHeads, c.headDim);
    return att;
  }

  /** The attention sub-block's output `wo·att (+ bo)`. */
  attnOutput(layer: LayerWeights, att: Float32Array): Float32Array {
    return linear(layer.wo, att, layer.bo);
  }

  /** RMSNorm before the MLP: the input of `w1` and `w3`. */
  ffnInput(layer: LayerWeights, h: Float32Array): Float32Array {
    const out = new Float32Array(h.length);
    rmsnorm(out, h, layer.ffnNorm, this.config.normEps);
    return out;
  }

  /** `silu(w1·fb) · (w3·fb)`: the input of `w2`. */
  mlpMid(layer: LayerWeights, fb: Float32Array): Float32Array {
    const gate = linear(layer.w1, fb);
    swiglu(gate, linear(layer.w3, fb));
    return gate;
  }

  /** The whole block: `h = x + attn(x)`, `out = h + mlp(h)`. */
  forward(layer: LayerWeights, x: Float32Array): Float32Array {
    const h = added(x, this.attnOutput(layer, this.attention(layer, this.attnInput(layer, x))));
    return added(h, linear(layer.w2, this.mlpMid(layer, this.ffnInput(layer, h))));
  }
}

/**
 * Peak working memory of a method, counted from the buffers it holds (hidden states, captured
 * inputs, Hessians, quantized weights) rather than sampled, so the figure repeats from run to
 * run.
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
