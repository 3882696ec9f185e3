/**
 * An interpreter of a decoder block's steps (`core/graph.ts`) on the CPU kernels of `ops.ts`:
 * the CPU backend's forward pass and calibration both run a block through it, so its numbers are
 * the reference's by construction. Values live in a map from their names to float32 arrays of
 * `T` rows; what differs between its users (the KV cache and positions, faster kernels for a
 * search) comes in as {@linkcode BlockKernels}.
 *
 * Buffers: every step writes a new array, except `head_rmsnorm`, `rope` and `hadamard`, which
 * work in place on their value, and `swiglu`, which writes its output over `gate` (the map then no longer holds
 * `gate`).
 *
 * @example
 * ```ts
 * import { blockShape, blockSteps } from "../../core/graph.ts";
 * import type { LayerWeights, LlamaConfig } from "../../core/model.ts";
 * declare const config: LlamaConfig, layer: LayerWeights, x: Float32Array;
 * const values = new Map([["x" as const, x]]);
 * const T = x.length / config.dim;
 * runBlock(blockSteps(blockShape(layer)), layer, config, values, cpuBlockKernels(config, 0, T));
 * values.get("out"); // the block's output for T tokens at positions 0 … T−1
 * ```
 *
 * @module
 */
import { type BlockStep, type BlockValue, hadamardSize, type HeadGroup } from "../../core/graph.ts";
import type { LayerWeights, LinearName, LlamaConfig } from "../../core/model.ts";
import { ropeInverseFrequencies } from "../../core/rope.ts";
import { attention, matmul, rmsnorm, type RopeAngles, ropeAngles, rotate, swiglu } from "./ops.ts";
import { hadamardTransform } from "./hadamard.ts";

/** The values of one block pass by name, each `T` rows. */
export type BlockValues = Map<BlockValue, Float32Array>;

/** Thrown when a step reads a value the map does not hold. */
export class MissingBlockValueError extends Error {
  override name = "MissingBlockValueError";
}

/** The kernels a block's steps run on; rmsnorm, biases and adds are always `ops.ts`'s. */
export interface BlockKernels {
  /** `x · Wᵀ` of the linear `name` (no bias), into a new array. */
  linear(x: Float32Array, name: LinearName, layer: LayerWeights): Float32Array;
  /** RoPE of `x` (rows of the `heads`' width) in place, at the pass's positions. */
  rope(x: Float32Array, heads: HeadGroup): void;
  /** Causal attention of the pass's queries over its keys and values (and any cached before). */
  attention(q: Float32Array, k: Float32Array, v: Float32Array): Float32Array;
  /** In place `gate = silu(gate) · up`. */
  swiglu(gate: Float32Array, up: Float32Array): void;
}

/**
 * Runs `steps[from … to)` of a block with `layer`'s weights over `values`, adding what the steps
 * write.
 */
export function runBlock(
  steps: readonly BlockStep[],
  layer: LayerWeights,
  config: LlamaConfig,
  values: BlockValues,
  kernels: BlockKernels,
  from = 0,
  to = steps.length,
): void {
  const get = (name: BlockValue): Float32Array => {
    const value = values.get(name);
    if (value === undefined) {
      throw new MissingBlockValueError(`Block value "${name}" is not computed before it is read`);
    }
    return value;
  };
  for (let i = from; i < to; i++) {
    const s = steps[i]!;
    switch (s.op) {
      case "rmsnorm": {
        const x = get(s.input);
        const out = new Float32Array(x.length);
        rmsnorm(out, x, layer[s.weight], config.normEps);
        values.set(s.output, out);
        break;
      }
      case "linear": {
        const out = kernels.linear(get(s.input), s.weight, layer);
        if (s.bias !== undefined) addBias(out, layer[s.bias]!);
        values.set(s.output, out);
        break;
      }
      case "head_rmsnorm": {
        const x = get(s.value);
        rmsnorm(x, x, layer[s.weight]!, config.normEps);
        break;
      }
      case "rope":
        kernels.rope(get(s.value), s.heads);
        break;
      case "hadamard":
        hadamardTransform(get(s.value), hadamardSize(config, s));
        break;
      case "attention":
        values.set(s.output, kernels.attention(get(s.q), get(s.k), get(s.v)));
        break;
      case "swiglu": {
        const gate = get(s.gate);
        kernels.swiglu(gate, get(s.up));
        values.delete(s.gate);
        values.set(s.output, gate);
        break;
      }
      case "add": {
        const a = get(s.a);
        const b = get(s.b);
        const out = new Float32Array(a.length);
        for (let j = 0; j < a.length; j++) out[j] = a[j]! + b[j]!;
        values.set(s.output, out);
        break;
      }
    }
  }
}

/** Adds `bias` to every row of `x` (rows of `bias.length`), in place. */
export function addBias(x: Float32Array, bias: Float32Array): void {
  for (let base = 0; base < x.length; base += bias.length) {
    for (let i = 0; i < bias.length; i++) x[base + i]! += bias[i]!;
  }
}

/** Options of {@linkcode cpuBlockKernels}. */
export interface CpuBlockKernelOptions {
  /** Run-time activation format every linear's input is quantized to, per token. */
  activations?: string;
  /** RoPE's inverse frequencies (default from the config); unused when `angles` are given. */
  invFreq?: ArrayLike<number>;
  /** RoPE's angles for at least the pass's rows at `pos` (default tabulated from `invFreq`). */
  angles?: RopeAngles;
  /**
   * Attention over the pass's `k`, `v` and whatever a cache holds before `pos` (default: causal
   * attention over the pass's own tokens, which needs `pos` 0).
   */
  attention?(q: Float32Array, k: Float32Array, v: Float32Array): Float32Array;
}

/**
 * The CPU backend's kernels for a pass of `T` tokens at positions `pos … pos+T−1`: `ops.matmul`
 * (with run-time activations when asked), RoPE from angles tabulated once for the pass, and
 * `ops.attention`.
 */
export function cpuBlockKernels(
  config: LlamaConfig,
  pos: number,
  T: number,
  options: CpuBlockKernelOptions = {},
): BlockKernels {
  const c = config;
  const angles = options.angles ??
    ropeAngles(T, pos, options.invFreq ?? ropeInverseFrequencies(c));
  return {
    linear(x, name, layer) {
      const w = layer[name];
      const out = new Float32Array((x.length / w.cols) * w.rows);
      matmul(out, x, w, options.activations);
      return out;
    },
    rope(x, heads) {
      rotate(x, heads === "query" ? c.nHeads : c.nKvHeads, c.headDim, c.ropeStyle, angles);
    },
    attention: options.attention ?? ((q, k, v) => {
      if (pos !== 0) {
        throw new RangeError(`Attention without a cache runs at position 0, not ${pos}`);
      }
      const out = new Float32Array(q.length);
      attention(out, q, k, v, 0, c.nHeads, c.nKvHeads, c.headDim);
      return out;
    }),
    swiglu,
  };
}
