/**
 * The interface every backend (cpu, webgpu) implements: load a backend-independent model once,
 * then run forward passes over token batches with a KV cache.
 *
 * @module
 */
import type { LlamaModel, Matrix } from "../core/model.ts";

/** Per-row scores of a forward pass ({@linkcode ModelRunner.forwardScores}). */
export interface TokenScores {
  /** NLL (nats) of each row's target under the row's logits; NaN where the target is −1. */
  nll: Float64Array;
  /** Index of each row's largest logit (the first one on ties). */
  argmax: Int32Array;
}

/** A model loaded onto a backend, with its own KV cache. */
export interface ModelRunner {
  /**
   * Runs `tokens` at positions `pos .. pos + tokens.length - 1`, appending to the KV cache, and
   * returns logits `[tokens.length][vocabSize]` row-major.
   */
  forward(tokens: ArrayLike<number>, pos: number): Promise<Float32Array>;
  /**
   * `forward`, returning only the last row's logits (`[vocabSize]`): a prompt's prefill, where
   * only the next token is wanted (as llama.cpp computes it). Optional: callers take the last row
   * of `forward`.
   */
  forwardLast?(tokens: ArrayLike<number>, pos: number): Promise<Float32Array>;
  /**
   * Runs `tokens` as {@linkcode forward} does, but returns per row only the NLL of `targets[row]`
   * (−1: none) and the argmax, computed where the logits are: scoring next tokens then needs no
   * `[T][vocab]` read-back. Optional: callers fall back to `forward` and score on the host.
   */
  forwardScores?(
    tokens: ArrayLike<number>,
    pos: number,
    targets: Int32Array,
  ): Promise<TokenScores>;
  /**
   * {@linkcode forwardScores} of several windows, each from position 0 on an emptied KV cache (as
   * after `reset`), submitted back to back so that the device never waits for the host between
   * them; the cache then holds the last window. Optional: callers fall back to one window at a
   * time.
   */
  forwardScoresMany?(
    windows: readonly { tokens: ArrayLike<number>; targets: Int32Array }[],
  ): Promise<TokenScores[]>;
  /**
   * Greedy decoding on the device, without a host round trip per token: runs `token` at `pos`,
   * then each step's most likely token (the first on ties, as `argmaxRow`) at the next position,
   * `count` steps in all, and returns the `count` tokens picked; the KV cache then holds
   * `pos + count` positions. The same tokens as `forward` one token at a time with the argmax on
   * the host. Absent where the backend has nothing to gain (the CPU).
   */
  decodeGreedy?(token: number, pos: number, count: number): Promise<Int32Array>;
  /**
   * Keeps the first `length` positions of the KV cache (at most what it holds), so the next
   * `forward` or `decodeGreedy` continues from there; present with `decodeGreedy`, whose steps
   * past a stopping point are dropped this way.
   */
  truncate?(length: number): void;
  /**
   * GB/s (bytes read + written per second) of a copy of `bytes` bytes (at most a storage binding)
   * on the runner's device, measured now: the bandwidth bound of decoding. Absent where the
   * backend has no such measurement.
   */
  copyBandwidth?(bytes: number): Promise<number>;
  /** Empties the KV cache so the next call may start again at position 0. */
  reset(): void;
  /** Frees resources. */
  dispose(): void;
  /**
   * Storage formats of weights the backend has no kernel for and runs decoded to f32 (`q4_k`,
   * `hqq-int4-g64`, …), each once; absent or empty when every weight runs in its own format.
   */
  readonly fallbackFormats?: readonly string[];
  /**
   * Bytes the runner's KV cache buffers take over all layers, as allocated for its maximum length
   * (a quantized cache counts what it keeps: codes, sides and any float copy or window); absent
   * where unknown.
   */
  readonly kvCacheBytes?: number;
}

/**
 * Single ops with the semantics of `kernels/cpu/ops.ts` (which defines the numbers), for
 * conformance tests. Inputs are left unchanged; each call returns a new array.
 */
export interface BackendOps {
  /**
   * `[T][w.rows]` with `T = x.length / w.cols`; with `activations` (a run-time format the backend
   * declares), `x` is first quantized per token as `kernels/formats/runtime_quant.ts` says.
   */
  matmul(x: Float32Array, w: Matrix, activations?: string): Promise<Float32Array>;
  rmsnorm(x: Float32Array, weight: Float32Array, eps: number): Promise<Float32Array>;
  rope(
    x: Float32Array,
    nHeads: number,
    headDim: number,
    pos: number,
    theta: number,
    style: "interleaved" | "half",
  ): Promise<Float32Array>;
  /** `silu(gate) · up`. */
  swiglu(gate: Float32Array, up: Float32Array): Promise<Float32Array>;
  attention(
    q: Float32Array,
    keyCache: Float32Array,
    valueCache: Float32Array,
    pos: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
  ): Promise<Float32Array>;
}

/** A way to execute models. */
export interface Backend {
  name: string;
  description: string;
  /** Why this backend cannot run here (no adapter …), or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  /**
   * Which run-time quantization of a model (`LlamaModel.runtime`) the backend executes; a format
   * asking for one it lacks makes the cell skipped. Absent: none.
   */
  runtimeQuantization?: {
    /** Element formats it quantizes activations to (`RUNTIME_FORMATS` names). */
    activations: readonly string[];
    kvCache: boolean;
  };
  /** Prepares a model to run; may repack weights for the backend's kernels. */
  load(model: LlamaModel, options?: { maxSeqLen?: number }): Promise<ModelRunner>;
  /** Op-level entry points (for the conformance suite), where the backend offers them. */
  ops?: BackendOps;
}
