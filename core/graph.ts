/**
 * The decoder model described once, as data: every backend's forward pass, the backward pass and
 * calibration interpret (or compile) these steps, so the Llama family's block exists in one
 * place. A step reads and writes named values of one block pass; the names below are the block's
 * tap points (the input of every linear, and the block's output), where calibration captures what
 * a method needs and where a method may substitute a quantized block's values.
 *
 * The model around the blocks is fixed: `x = embedding[token]`, the blocks in order, then
 * `rmsnorm(x, finalNorm)` and the head (`output`, tied or not) giving logits.
 *
 * Semantics every interpreter keeps (the CPU backend defines the numbers, float32 throughout):
 * - `rmsnorm`: per row of `dim` (or per head of `headDim` for `head_rmsnorm`),
 *   `y = x / sqrt(mean(x²) + eps) · weight`.
 * - `linear`: `y = x · Wᵀ (+ bias)`, the bias added after the matmul; `W` may be quantized, and
 *   run-time activation quantization (`LlamaModel.runtime.activations`) applies to its input.
 * - `rope`: rotates each head of `value` at the tokens' positions with the model's inverse
 *   frequencies and pairing (`ropeStyle`).
 * - `attention`: appends `k`, `v` to the layer's KV cache (quantized as the runtime says), then
 *   causal grouped-query attention of `q` over every cached position.
 * - `swiglu`: `silu(gate) · up`. `add`: elementwise sum (the residual stream).
 * - `hadamard`: replaces, in place, every block of `n` values of each row of `value` (`n` the
 *   head width for `block: "head"`, the row's width for `block: "row"`) by `M · v`, the
 *   orthogonal Hadamard transform of `kernels/cpu/hadamard.ts` (no random signs): the online
 *   rotations of a rotated model (QuaRot), whose weights hold the inverse.
 *
 * @example
 * ```ts
 * const steps = blockSteps({ biases: false, qkNorm: false });
 * linearInputs(steps).get("wq"); // "xb"
 * ```
 *
 * @module
 */
import type {
  LayerWeights,
  LinearName,
  LlamaConfig,
  LlamaWeights,
  OnlineHadamards,
} from "./model.ts";

/** A named activation of one block pass (each holds `T` rows). */
export type BlockValue =
  /** The block's input: the residual stream. */
  | "x"
  /** RMSNorm of `x`: the input of `wq`, `wk`, `wv`. */
  | "xb"
  | "q"
  | "k"
  | "v"
  /** Attention output: the input of `wo`. */
  | "att"
  | "attnOut"
  /** `x + attnOut`: the residual after attention. */
  | "h"
  /** RMSNorm of `h`: the input of `w1` and `w3`. */
  | "fb"
  | "gate"
  | "up"
  /** `silu(gate) · up`: the input of `w2`. */
  | "mid"
  | "mlpOut"
  /** `h + mlpOut`: the block's output. */
  | "out";

/** A norm weight of a block. */
export type NormName = "attnNorm" | "ffnNorm";
/** A per-head norm weight (Qwen3). */
export type HeadNormName = "qNorm" | "kNorm";
/** A bias of a block's linear. */
export type BiasName = "bq" | "bk" | "bv" | "bo";
/** Which heads a per-head step works on: the query heads or the key/value heads. */
export type HeadGroup = "query" | "kv";

/** One operation of a block. */
export type BlockStep =
  | { op: "rmsnorm"; input: BlockValue; weight: NormName; output: BlockValue }
  | {
    op: "linear";
    input: BlockValue;
    weight: LinearName;
    bias?: BiasName;
    output: BlockValue;
  }
  | { op: "head_rmsnorm"; value: "q" | "k"; weight: HeadNormName; heads: HeadGroup }
  | { op: "rope"; value: "q" | "k"; heads: HeadGroup }
  | { op: "attention"; q: "q"; k: "k"; v: "v"; output: BlockValue }
  | { op: "swiglu"; gate: BlockValue; up: BlockValue; output: BlockValue }
  | { op: "add"; a: BlockValue; b: BlockValue; output: BlockValue }
  | { op: "hadamard"; value: HadamardValue; block: "head" | "row" };

/** The values a `hadamard` step may rewrite: queries and keys per head, a linear's input. */
export type HadamardValue = "q" | "k" | "att" | "mid";

/** The optional parts of a block, as the loaded weights have them. */
export interface BlockShape {
  /** q, k, v biases (Qwen2; Llama with `attention_bias`); `bo` when present too. */
  biases: boolean | { bq: boolean; bk: boolean; bv: boolean; bo: boolean };
  /** RMSNorm of each query and key head before RoPE (Qwen3). */
  qkNorm: boolean;
  /** Hadamard transforms at run time (a rotated model's, QuaRot); absent: none. */
  hadamard?: OnlineHadamards;
}

/** The shape of a layer's weights: which optional tensors it has. */
export function blockShape(layer: LayerWeights): BlockShape {
  return {
    biases: {
      bq: layer.bq !== undefined,
      bk: layer.bk !== undefined,
      bv: layer.bv !== undefined,
      bo: layer.bo !== undefined,
    },
    qkNorm: layer.qNorm !== undefined || layer.kNorm !== undefined,
    ...(layer.hadamard === undefined ? {} : { hadamard: layer.hadamard }),
  };
}

/**
 * The steps of one decoder block, in the order the CPU backend runs them: pre-norm attention
 * (projections, biases, q/k norms, RoPE, causal GQA over the KV cache, output projection) and a
 * pre-norm SwiGLU MLP, each added to the residual stream.
 */
export function blockSteps(shape: BlockShape): BlockStep[] {
  const has = (b: BiasName) =>
    typeof shape.biases === "boolean" ? shape.biases && b !== "bo" : shape.biases[b];
  const linear = (
    input: BlockValue,
    weight: LinearName,
    output: BlockValue,
    bias: BiasName | undefined,
  ): BlockStep =>
    bias !== undefined && has(bias)
      ? { op: "linear", input, weight, bias, output }
      : { op: "linear", input, weight, output };
  const steps: BlockStep[] = [
    { op: "rmsnorm", input: "x", weight: "attnNorm", output: "xb" },
    linear("xb", "wq", "q", "bq"),
    linear("xb", "wk", "k", "bk"),
    linear("xb", "wv", "v", "bv"),
  ];
  if (shape.qkNorm) {
    steps.push(
      { op: "head_rmsnorm", value: "q", weight: "qNorm", heads: "query" },
      { op: "head_rmsnorm", value: "k", weight: "kNorm", heads: "kv" },
    );
  }
  const had = shape.hadamard;
  steps.push(
    { op: "rope", value: "q", heads: "query" },
    { op: "rope", value: "k", heads: "kv" },
  );
  // After RoPE, so the KV cache holds rotated keys (QuaRot's `QKRotationWrapper`).
  if (had?.qk) {
    steps.push({ op: "hadamard", value: "q", block: "head" }, {
      op: "hadamard",
      value: "k",
      block: "head",
    });
  }
  steps.push({ op: "attention", q: "q", k: "k", v: "v", output: "att" });
  // Per head, undoing the value rotation (a power-of-two head's Hadamard is its own inverse),
  // then across the whole row: QuaRot's cross-head transform on a per-head-rotated input.
  if (had?.attention) {
    steps.push({ op: "hadamard", value: "att", block: "head" }, {
      op: "hadamard",
      value: "att",
      block: "row",
    });
  }
  steps.push(
    linear("att", "wo", "attnOut", "bo"),
    { op: "add", a: "x", b: "attnOut", output: "h" },
    { op: "rmsnorm", input: "h", weight: "ffnNorm", output: "fb" },
    linear("fb", "w1", "gate", undefined),
    linear("fb", "w3", "up", undefined),
    { op: "swiglu", gate: "gate", up: "up", output: "mid" },
  );
  if (had?.down) steps.push({ op: "hadamard", value: "mid", block: "row" });
  steps.push(
    linear("mid", "w2", "mlpOut", undefined),
    { op: "add", a: "h", b: "mlpOut", output: "out" },
  );
  return steps;
}

/** The tap point of every linear: the value that is its input (`wq` → `xb`, `w2` → `mid`). */
export function linearInputs(steps: readonly BlockStep[]): Map<LinearName, BlockValue> {
  const taps = new Map<LinearName, BlockValue>();
  for (const s of steps) if (s.op === "linear") taps.set(s.weight, s.input);
  return taps;
}

/**
 * Linears grouped by their shared input, in block order (`[wq, wk, wv]`, `[wo]`, `[w1, w3]`,
 * `[w2]`): the units a sequential calibration quantizes together, since they see the same
 * captured activations.
 */
export function linearGroups(steps: readonly BlockStep[]): LinearName[][] {
  const groups = new Map<BlockValue, LinearName[]>();
  for (const s of steps) {
    if (s.op !== "linear") continue;
    const group = groups.get(s.input);
    if (group) group.push(s.weight);
    else groups.set(s.input, [s.weight]);
  }
  return [...groups.values()];
}

/** The values a step reads (for `head_rmsnorm` and `rope`, the value they rewrite in place). */
export function stepInputs(step: BlockStep): BlockValue[] {
  switch (step.op) {
    case "rmsnorm":
    case "linear":
      return [step.input];
    case "head_rmsnorm":
    case "rope":
    case "hadamard":
      return [step.value];
    case "attention":
      return [step.q, step.k, step.v];
    case "swiglu":
      return [step.gate, step.up];
    case "add":
      return [step.a, step.b];
  }
}

/** The value a step writes (for `head_rmsnorm`, `rope` and `hadamard`, the value rewritten). */
export function stepOutput(step: BlockStep): BlockValue {
  return step.op === "head_rmsnorm" || step.op === "rope" || step.op === "hadamard"
    ? step.value
    : step.output;
}

/** The widths a block's values have (a `LlamaConfig` is one). */
export type BlockDims = Pick<LlamaConfig, "dim" | "hiddenDim" | "nHeads" | "nKvHeads" | "headDim">;

/** The width of one row (token) of `value` in a model of `config`. */
export function valueWidth(config: BlockDims, value: BlockValue): number {
  switch (value) {
    case "q":
    case "att":
      return config.nHeads * config.headDim;
    case "k":
    case "v":
      return config.nKvHeads * config.headDim;
    case "gate":
    case "up":
    case "mid":
      return config.hiddenDim;
    default:
      return config.dim;
  }
}

/** The size `n` of the blocks a `hadamard` step transforms: a head's width or the row's. */
export function hadamardSize(
  config: BlockDims,
  step: Extract<BlockStep, { op: "hadamard" }>,
): number {
  return step.block === "head" ? config.headDim : valueWidth(config, step.value);
}

/** The index of the step that first writes `value`, or −1 (`x`, the block's input). */
export function producerIndex(steps: readonly BlockStep[], value: BlockValue): number {
  return steps.findIndex((s) => stepOutput(s) === value);
}

/** The value a block's steps end with: its output, the next block's `x`. */
export const BLOCK_OUTPUT: BlockValue = "out";

/**
 * The model around the blocks, which every interpreter runs the same way: the token embedding
 * (a lookup), each layer's steps in order, the final RMSNorm, and the head (`logits = x ·
 * outputᵀ`, the embedding's matrix when `tied`).
 */
export interface ModelGraph {
  embedding: "tokenEmbedding";
  /** The steps of each layer, as its weights have them. */
  blocks: BlockStep[][];
  finalNorm: "finalNorm";
  head: "output";
  /** Whether the head shares the token embedding in the original checkpoint. */
  tied: boolean;
}

/** The description of a whole model from its weights (see {@linkcode ModelGraph}). */
export function modelGraph(weights: LlamaWeights): ModelGraph {
  return {
    embedding: "tokenEmbedding",
    blocks: weights.layers.map((layer) => blockSteps(blockShape(layer))),
    finalNorm: "finalNorm",
    head: "output",
    tied: weights.tiedEmbeddings,
  };
}
