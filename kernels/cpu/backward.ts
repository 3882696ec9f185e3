/**
 * Reverse-mode differentiation of the decoder, in float64 on the CPU: a forward pass that
 * interprets the block's steps (`core/graph.ts`: `blockSteps`) and records, for each step, a
 * closure that turns the gradient of its output into gradients of its inputs and parameters; the
 * backward pass runs those closures in reverse.
 *
 * What is differentiable, w.r.t. which parameters (names as {@linkcode parameters} lists them):
 * - the token embedding (`tokenEmbedding`; a scatter-add, plus the classifier's gradient when the
 *   model ties them), every RMSNorm weight (`layers.L.attnNorm`, `ffnNorm`, `qNorm`, `kNorm`,
 *   `finalNorm`), every linear's weight (`layers.L.wq` … `w3`, `output` when untied) and bias
 *   (`bq`, `bk`, `bv`, `bo`);
 * - RoPE (both pairings, any frequency scaling; the angles are constants), causal grouped-query
 *   attention over the sequence (positions `0 .. T−1`, no KV cache), SwiGLU, the residual adds;
 * - a fake-quantized linear (`fake_quant.ts`): the weight through the straight-through estimator,
 *   its scales (`….scales`, LSQ) and its optional per-input-channel factor (`….channel`);
 * - fake quantization of what runs at run time (`TrainParams.runtime`, LLM-QAT's QAT), with
 *   straight-through gradients: every linear's input per token (`fakeQuantTokens`: the authors'
 *   gradient cut-off); the keys and values either as the projections give them (`kvBits`: per
 *   token over all KV heads, before RoPE, where LLM-QAT quantizes its cache) or as attention reads
 *   them from the run-time quantized cache (`kvCache`: KIVI's groups, `fakeQuantKv`);
 * - the losses of `grad_ops.ts`: cross-entropy on targets, KL divergence to a teacher's logits;
 *   for one block ({@linkcode blockLossAndGradients}), the mean squared error of its output to
 *   targets (block-wise reconstruction: OmniQuant, AffineQuant);
 * - for one block, run-time activation quantization (per token, symmetric absmax, as
 *   `runtime_quant.ts`'s `int<b>`) of every linear's input with the plain straight-through
 *   estimator (AffineQuant's training: the gradient passes to the unquantized input unchanged);
 * - one block alone (`blockGradients`), from any gradient at its output: block-wise fine-tuning.
 *
 * Not differentiable here: quantized (`int`, `coded`) matrices of a loaded model (convert to dense
 * and fake-quantize instead), the run-time scales (detached, as LLM-QAT's), the zero points.
 *
 * @example
 * ```ts
 * declare const model: import("../../core/model.ts").LlamaModel;
 * const params = trainParams(model);
 * const tokens = [1, 5, 9, 2];
 * const { loss, gradients } = lossAndGradients(model.config, params, tokens, {
 *   kind: "cross_entropy",
 *   targets: [5, 9, 2, -1],
 * });
 * gradients.get("layers.0.attnNorm"); // ∂loss/∂(first attention norm weight)
 * ```
 *
 * @module
 */
import type { BlockShape, BlockStep, BlockValue } from "../../core/graph.ts";
import { BLOCK_OUTPUT, blockSteps, hadamardSize } from "../../core/graph.ts";
import { hadamardTransform } from "./hadamard.ts";
import type {
  KvCacheSettings,
  LinearName,
  LlamaConfig,
  LlamaModel,
  Matrix,
  OnlineHadamards,
} from "../../core/model.ts";
import { LINEAR_NAMES } from "../../core/model.ts";
import { ropeInverseFrequencies } from "../../core/rope.ts";
import {
  attentionBackward,
  attentionForward,
  crossEntropy,
  embeddingBackward,
  embeddingForward,
  klToTeacher,
  linearBackward,
  linearForward,
  type LossGrad,
  rmsnormBackward,
  rmsnormForward,
  ropeApply,
  ropeRotation,
  type Rotation,
  swigluBackward,
  swigluForward,
} from "./grad_ops.ts";
import { roundHalfEven } from "../formats/int.ts";
import {
  type FakeQuant,
  type FakeQuantConfig,
  fakeQuantKv,
  fakeQuantLinear,
  fakeQuantTokens,
  initFakeQuant,
} from "./fake_quant.ts";

/** A linear's trainable weight `[rows = out][cols = in]`, optionally fake-quantized. */
export interface TrainLinear {
  rows: number;
  cols: number;
  w: Float64Array;
  quant?: FakeQuant;
}

/** A block's trainable parameters (see `LayerWeights`). */
export interface TrainLayer {
  attnNorm: Float64Array;
  ffnNorm: Float64Array;
  wq: TrainLinear;
  wk: TrainLinear;
  wv: TrainLinear;
  wo: TrainLinear;
  w1: TrainLinear;
  w2: TrainLinear;
  w3: TrainLinear;
  bq?: Float64Array;
  bk?: Float64Array;
  bv?: Float64Array;
  bo?: Float64Array;
  qNorm?: Float64Array;
  kNorm?: Float64Array;
  /** Run-time Hadamard transforms of a rotated model (see `LayerWeights.hadamard`). */
  hadamard?: OnlineHadamards;
}

/** A model's trainable parameters in float64. */
export interface TrainParams {
  tokenEmbedding: Float64Array;
  layers: TrainLayer[];
  finalNorm: Float64Array;
  /** The classifier; absent when tied to the token embedding. */
  output?: TrainLinear;
  /** Fake quantization of the blocks' run-time values (bits), absent for none. */
  runtime?: RuntimeFakeQuant;
}

/** What of a block's run-time values is fake-quantized. */
export interface RuntimeFakeQuant {
  /** Bits of every linear's input, per token. */
  activationBits?: number;
  /** Bits of the keys and values per token at the projections' outputs (LLM-QAT's rule). */
  kvBits?: number;
  /** The run-time KV cache's quantization of attention's keys and values (`fakeQuantKv`). */
  kvCache?: KvCacheSettings;
}

/** What the loss compares the logits with. */
export type Objective =
  /** Mean cross-entropy on `targets` (one per token; a negative target ignores its row). */
  | { kind: "cross_entropy"; targets: ArrayLike<number> }
  /** Mean KL(teacher ‖ model) over rows, from the teacher's `[T][vocab]` logits. */
  | { kind: "kl"; teacher: ArrayLike<number> };

/** The architecture fields the pass needs. */
export type TrainConfig = Pick<
  LlamaConfig,
  | "dim"
  | "nHeads"
  | "nKvHeads"
  | "headDim"
  | "vocabSize"
  | "normEps"
  | "ropeTheta"
  | "ropeStyle"
  | "ropeScaling"
>;

/** Thrown for a model the backward pass cannot train as it is. */
export class TrainModelError extends Error {
  override name = "TrainModelError";
}

/**
 * A model's weights as float64 trainable parameters. Linear weights must be dense; `quant` picks
 * the linears to fake-quantize (`initFakeQuant`), by layer and name.
 */
export function trainParams(
  model: LlamaModel,
  quant?: (layer: number, name: LinearName) => FakeQuantConfig | undefined,
): TrainParams {
  const w = model.weights;
  const f64 = (a: Float32Array) => Float64Array.from(a);
  const linear = (m: Matrix, what: string, config?: FakeQuantConfig): TrainLinear => {
    if (m.kind !== "dense") {
      throw new TrainModelError(`Weight ${what} is ${m.kind}-quantized; training needs dense`);
    }
    const lin: TrainLinear = { rows: m.rows, cols: m.cols, w: f64(m.data) };
    if (config) lin.quant = initFakeQuant(lin.w, m.rows, m.cols, config);
    return lin;
  };
  const layers = w.layers.map((layer, l) => {
    const out: Partial<TrainLayer> = { attnNorm: f64(layer.attnNorm), ffnNorm: f64(layer.ffnNorm) };
    for (const name of LINEAR_NAMES) {
      out[name] = linear(layer[name], `layers.${l}.${name}`, quant?.(l, name));
    }
    for (const name of ["bq", "bk", "bv", "bo", "qNorm", "kNorm"] as const) {
      const v = layer[name];
      if (v) out[name] = f64(v);
    }
    if (layer.hadamard) out.hadamard = layer.hadamard;
    return out as TrainLayer;
  });
  const params: TrainParams = {
    tokenEmbedding: f64(w.tokenEmbedding),
    layers,
    finalNorm: f64(w.finalNorm),
  };
  if (!w.tiedEmbeddings) params.output = linear(w.output, "output");
  return params;
}

/** Every trainable tensor by name (`tokenEmbedding`, `layers.0.wq`, `layers.0.wq.scales`, …). */
export function parameters(params: TrainParams): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  out.set("tokenEmbedding", params.tokenEmbedding);
  params.layers.forEach((layer, l) => addLayerParameters(out, `layers.${l}.`, layer));
  out.set("finalNorm", params.finalNorm);
  if (params.output) addLinearParameters(out, "output", params.output);
  return out;
}

/** Adds a linear's tensors to `out` under `name` (its weight) and `name.scales`, `name.channel`. */
function addLinearParameters(out: Map<string, Float64Array>, name: string, lin: TrainLinear): void {
  out.set(name, lin.w);
  if (lin.quant) out.set(`${name}.scales`, lin.quant.scales);
  if (lin.quant?.channel) out.set(`${name}.channel`, lin.quant.channel);
}

/** Adds a block's tensors to `out`, each name prefixed by `prefix`. */
function addLayerParameters(
  out: Map<string, Float64Array>,
  prefix: string,
  layer: TrainLayer,
): void {
  out.set(prefix + "attnNorm", layer.attnNorm);
  out.set(prefix + "ffnNorm", layer.ffnNorm);
  for (const name of LINEAR_NAMES) addLinearParameters(out, prefix + name, layer[name]);
  for (const name of ["bq", "bk", "bv", "bo", "qNorm", "kNorm"] as const) {
    const v = layer[name];
    if (v) out.set(prefix + name, v);
  }
}

/** The block shape of a layer's parameters, for `blockSteps`. */
function shapeOf(layer: TrainLayer): BlockShape {
  if ((layer.qNorm === undefined) !== (layer.kNorm === undefined)) {
    throw new TrainModelError("A layer has one of qNorm and kNorm; it needs both or neither");
  }
  return {
    biases: {
      bq: layer.bq !== undefined,
      bk: layer.bk !== undefined,
      bv: layer.bv !== undefined,
      bo: layer.bo !== undefined,
    },
    qkNorm: layer.qNorm !== undefined,
    ...(layer.hadamard === undefined ? {} : { hadamard: layer.hadamard }),
  };
}

/** Gradients of named activations during the backward pass, summed over their readers. */
class ValueGrads {
  readonly #grads = new Map<BlockValue, Float64Array>();

  /** Removes and returns the gradient of `name` (undefined when nothing read it). */
  take(name: BlockValue): Float64Array | undefined {
    const g = this.#grads.get(name);
    this.#grads.delete(name);
    return g;
  }

  add(name: BlockValue, g: Float64Array): void {
    const sum = this.#grads.get(name);
    if (sum === undefined) this.#grads.set(name, g.slice());
    else for (let i = 0; i < g.length; i++) sum[i]! += g[i]!;
  }
}

/** The parts of one pass every step needs. */
interface Pass {
  config: TrainConfig;
  rotation: Rotation;
  /** Gradients of the parameters, by {@linkcode parameters} name. */
  grads: Map<string, Float64Array>;
  /** Bits of the run-time activation quantization of every linear's input, when quantized. */
  activationBits?: number;
  runtime?: RuntimeFakeQuant;
}

/**
 * A linear (dense or fake-quantized, with bias) forward; returns the output and the backward,
 * which adds the parameter gradients under `name` and returns the input gradient.
 */
function linearPass(
  pass: Pass,
  x: Float64Array,
  lin: TrainLinear,
  name: string,
  bias?: { value: Float64Array; name: string },
): { y: Float64Array; back: (dy: Float64Array) => Float64Array } {
  const { rows, cols, quant } = lin;
  // The straight-through estimator: the backward's input gradient goes to `x` as it is.
  if (pass.activationBits !== undefined) x = quantizeTokens(x, cols, pass.activationBits);
  if (quant) {
    const { y, back } = fakeQuantLinear(x, lin.w, rows, cols, quant, bias?.value);
    return {
      y,
      back: (dy) => {
        const g = back(dy, bias && pass.grads.get(bias.name));
        addInto(pass.grads.get(name)!, g.dw);
        addInto(pass.grads.get(`${name}.scales`)!, g.dscales);
        if (g.dchannel) addInto(pass.grads.get(`${name}.channel`)!, g.dchannel);
        return g.dx;
      },
    };
  }
  const y = linearForward(x, lin.w, rows, cols, bias?.value);
  const back = (dy: Float64Array) =>
    linearBackward(
      dy,
      x,
      lin.w,
      rows,
      cols,
      pass.grads.get(name),
      bias && pass.grads.get(bias.name),
    );
  return { y, back };
}

/**
 * Per-token symmetric quantization of `x` (rows of `cols`) to `bits` bits, as `runtime_quant.ts`
 * quantizes activations (`scale = max(amax, 1e-5) / (2^(b−1) − 1)`, ties to even), in float64.
 */
export function quantizeTokens(x: Float64Array, cols: number, bits: number): Float64Array {
  const qmax = 2 ** (bits - 1) - 1;
  const out = new Float64Array(x.length);
  for (let base = 0; base < x.length; base += cols) {
    let amax = 0;
    for (let i = base; i < base + cols; i++) amax = Math.max(amax, Math.abs(x[i]!));
    const scale = Math.max(amax, 1e-5) / qmax;
    for (let i = base; i < base + cols; i++) {
      out[i] = Math.min(qmax, Math.max(-qmax, roundHalfEven(x[i]! / scale))) * scale;
    }
  }
  return out;
}

/** `sum += g`, elementwise. */
function addInto(sum: Float64Array, g: Float64Array): void {
  for (let i = 0; i < g.length; i++) sum[i]! += g[i]!;
}

/** Runs one block's steps forward on `x`; returns the output and pushes backward closures. */
function blockForward(
  pass: Pass,
  layer: TrainLayer,
  l: number,
  steps: readonly BlockStep[],
  x: Float64Array,
  tape: (() => void)[],
  grads: ValueGrads,
): Float64Array {
  const { config: c } = pass;
  const values = new Map<BlockValue, Float64Array>([["x", x]]);
  const get = (name: BlockValue) => values.get(name)!;
  const param = (name: string) => `layers.${l}.${name}`;
  for (const step of steps) {
    switch (step.op) {
      case "rmsnorm":
      case "head_rmsnorm": {
        const input = step.op === "rmsnorm" ? step.input : step.value;
        const output = step.op === "rmsnorm" ? step.output : step.value;
        const weight = layer[step.weight]!;
        const xin = get(input);
        const { y, inv } = rmsnormForward(xin, weight, c.normEps);
        values.set(output, y);
        tape.push(() => {
          const dy = grads.take(output);
          const dw = pass.grads.get(param(step.weight))!;
          if (dy) grads.add(input, rmsnormBackward(dy, xin, weight, inv, dw));
        });
        break;
      }
      case "linear": {
        const bias = step.bias && { value: layer[step.bias]!, name: param(step.bias) };
        const lin = layer[step.weight];
        const { activationBits, kvBits } = pass.runtime ?? {};
        const input = activationBits === undefined
          ? undefined
          : fakeQuantTokens(get(step.input), lin.cols, activationBits);
        const { y, back } = linearPass(
          pass,
          input?.y ?? get(step.input),
          lin,
          param(step.weight),
          bias,
        );
        const cache = kvBits !== undefined && (step.output === "k" || step.output === "v")
          ? fakeQuantTokens(y, lin.rows, kvBits)
          : undefined;
        values.set(step.output, cache?.y ?? y);
        tape.push(() => {
          const dout = grads.take(step.output);
          if (!dout) return;
          const dx = back(cache ? cache.back(dout) : dout);
          grads.add(step.input, input ? input.back(dx) : dx);
        });
        break;
      }
      case "rope": {
        const heads = step.heads === "query" ? c.nHeads : c.nKvHeads;
        values.set(
          step.value,
          ropeApply(get(step.value), heads, c.headDim, c.ropeStyle, pass.rotation),
        );
        tape.push(() => {
          const dy = grads.take(step.value);
          if (dy) {
            grads.add(
              step.value,
              ropeApply(dy, heads, c.headDim, c.ropeStyle, pass.rotation, true),
            );
          }
        });
        break;
      }
      case "hadamard": {
        // y = M·x per block, so dx = Mᵀ·dy.
        const n = hadamardSize({ ...c, hiddenDim: layer.w2.cols }, step);
        const y = get(step.value).slice();
        hadamardTransform(y, n);
        values.set(step.value, y);
        tape.push(() => {
          const dy = grads.take(step.value);
          if (!dy) return;
          const dx = dy.slice();
          hadamardTransform(dx, n, true);
          grads.add(step.value, dx);
        });
        break;
      }
      case "attention": {
        const q = get(step.q);
        const cache = pass.runtime?.kvCache;
        const kvDim = c.nKvHeads * c.headDim;
        const kq = cache && fakeQuantKv(get(step.k), kvDim, c.headDim, "keys", cache);
        const vq = cache && fakeQuantKv(get(step.v), kvDim, c.headDim, "values", cache);
        const [k, v] = [kq?.y ?? get(step.k), vq?.y ?? get(step.v)];
        const { out, p } = attentionForward(q, k, v, c);
        values.set(step.output, out);
        tape.push(() => {
          const dy = grads.take(step.output);
          if (!dy) return;
          const { dq, dk, dv } = attentionBackward(dy, q, k, v, p, c);
          grads.add(step.q, dq);
          grads.add(step.k, kq ? kq.back(dk) : dk);
          grads.add(step.v, vq ? vq.back(dv) : dv);
        });
        break;
      }
      case "swiglu": {
        const [gate, up] = [get(step.gate), get(step.up)];
        values.set(step.output, swigluForward(gate, up));
        tape.push(() => {
          const dy = grads.take(step.output);
          if (!dy) return;
          const { dgate, dup } = swigluBackward(dy, gate, up);
          grads.add(step.gate, dgate);
          grads.add(step.up, dup);
        });
        break;
      }
      case "add": {
        const [a, b] = [get(step.a), get(step.b)];
        values.set(step.output, a.map((v, i) => v + b[i]!));
        tape.push(() => {
          const dy = grads.take(step.output);
          if (!dy) return;
          grads.add(step.a, dy);
          grads.add(step.b, dy);
        });
        break;
      }
    }
  }
  return get(BLOCK_OUTPUT);
}

/** The loss, its gradients by {@linkcode parameters} name, and the logits (`[T][vocab]`). */
export interface LossAndGradients {
  loss: number;
  gradients: Map<string, Float64Array>;
  logits: Float64Array;
}

/**
 * Forward pass over `tokens` (positions `0 .. T−1`), the loss against `objective`, and the
 * gradient of the loss w.r.t. every parameter.
 */
export function lossAndGradients(
  config: TrainConfig,
  params: TrainParams,
  tokens: ArrayLike<number>,
  objective: Objective,
): LossAndGradients {
  const T = tokens.length;
  const grads = new Map<string, Float64Array>();
  for (const [name, p] of parameters(params)) grads.set(name, new Float64Array(p.length));
  const pass: Pass = {
    config,
    rotation: ropeRotation(T, ropeInverseFrequencies(config)),
    grads,
    runtime: params.runtime,
  };
  const tape: (() => void)[] = [];
  const valueGrads = new ValueGrads();
  let x = embeddingForward(params.tokenEmbedding, config.dim, tokens);
  params.layers.forEach((layer, l) => {
    const blockTape: (() => void)[] = [];
    x = blockForward(pass, layer, l, blockSteps(shapeOf(layer)), x, blockTape, valueGrads);
    tape.push(() => {
      for (let i = blockTape.length - 1; i >= 0; i--) blockTape[i]!();
    });
  });
  const { y: xf, inv } = rmsnormForward(x, params.finalNorm, config.normEps);
  const head = params.output ??
    { rows: config.vocabSize, cols: config.dim, w: params.tokenEmbedding };
  const { y: logits, back } = linearPass(
    pass,
    xf,
    head,
    params.output ? "output" : "tokenEmbedding",
  );
  const result: LossGrad = objective.kind === "cross_entropy"
    ? crossEntropy(logits, config.vocabSize, objective.targets)
    : klToTeacher(logits, objective.teacher, config.vocabSize);

  let dx = rmsnormBackward(back(result.dlogits), x, params.finalNorm, inv, grads.get("finalNorm")!);
  for (let l = params.layers.length - 1; l >= 0; l--) {
    valueGrads.add(BLOCK_OUTPUT, dx);
    tape[l]!();
    dx = valueGrads.take("x")!;
  }
  embeddingBackward(dx, config.dim, tokens, grads.get("tokenEmbedding")!);
  return { loss: result.loss, gradients: grads, logits };
}

/** One block's output and the gradients of a loss of it (see {@linkcode blockGradients}). */
export interface BlockGradients {
  /** The block's output, `[T][dim]`. */
  output: Float64Array;
  /** Gradients by the block's parameter names (`attnNorm`, `wq`, `wq.scales`, `bq`, …). */
  gradients: Map<string, Float64Array>;
  /** The gradient at the block's input. */
  dx: Float64Array;
}

/**
 * One block alone on hidden states `x` (`[T][dim]`, positions `0 .. T−1`): its output `y`, and
 * the gradients w.r.t. its parameters of a loss whose gradient at the output is `dOutput(y)`
 * (block-wise fine-tuning: a loss between `y` and a reference block's output); `activationBits`
 * quantizes every linear's input per token (see the module notes).
 */
export function blockGradients(
  config: TrainConfig,
  layer: TrainLayer,
  x: Float64Array,
  dOutput: (y: Float64Array) => Float64Array,
  activationBits?: number,
): BlockGradients {
  const T = x.length / config.dim;
  const named = new Map<string, Float64Array>();
  // `blockForward` names a block's parameters as those of layer 0 of a model.
  const prefix = "layers.0.";
  addLayerParameters(named, prefix, layer);
  const grads = new Map<string, Float64Array>();
  for (const [name, p] of named) grads.set(name, new Float64Array(p.length));
  const pass: Pass = {
    config,
    rotation: ropeRotation(T, ropeInverseFrequencies(config)),
    grads,
  };
  if (activationBits !== undefined) pass.activationBits = activationBits;
  const tape: (() => void)[] = [];
  const valueGrads = new ValueGrads();
  const output = blockForward(pass, layer, 0, blockSteps(shapeOf(layer)), x, tape, valueGrads);
  valueGrads.add(BLOCK_OUTPUT, dOutput(output));
  for (let i = tape.length - 1; i >= 0; i--) tape[i]!();
  const gradients = new Map([...grads].map(([name, g]) => [name.slice(prefix.length), g]));
  return { output, gradients, dx: valueGrads.take("x") ?? new Float64Array(x.length) };
}

/** The loss of one block, its gradients, and its output. */
export interface BlockLossAndGradients {
  loss: number;
  /** Gradients by the layer's parameter names (`attnNorm`, `wq`, `wq.scales`, …). */
  gradients: Map<string, Float64Array>;
  /** The block's output (`[T][dim]`). */
  output: Float64Array;
}

/**
 * One block over `x` (`[T][dim]`, positions `0 .. T−1`) and the sum over `targets` of the mean
 * squared error of its output to each (`torch.nn.MSELoss`, mean over all elements), with the
 * gradient w.r.t. every parameter of `layer` ({@linkcode blockGradients}).
 */
export function blockLossAndGradients(
  config: TrainConfig,
  layer: TrainLayer,
  x: Float64Array,
  targets: readonly Float64Array[],
  activationBits?: number,
): BlockLossAndGradients {
  let loss = 0;
  const { output, gradients } = blockGradients(config, layer, x, (y) => {
    const dout = new Float64Array(y.length);
    for (const target of targets) {
      let sum = 0;
      for (let i = 0; i < y.length; i++) {
        const d = y[i]! - target[i]!;
        sum += d * d;
        dout[i]! += (2 * d) / y.length;
      }
      loss += sum / y.length;
    }
    return dout;
  }, activationBits);
  return { loss, gradients, output };
}
