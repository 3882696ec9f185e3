/**
 * The interface every backend (cpu, webgpu) implements: load a backend-independent model once,
 * then run forward passes over token batches with a KV cache.
 *
 * @module
 */
import type { LlamaModel } from "../harness/models/model.ts";

/** A model loaded onto a backend, with its own KV cache. */
export interface ModelRunner {
  /**
   * Runs `tokens` at positions `pos .. pos + tokens.length - 1`, appending to the KV cache, and
   * returns logits `[tokens.length][vocabSize]` row-major.
   */
  forward(tokens: ArrayLike<number>, pos: number): Promise<Float32Array>;
  /** Empties the KV cache so the next call may start again at position 0. */
  reset(): void;
  /** Frees resources. */
  dispose(): void;
}

/** A way to execute models. */
export interface Backend {
  name: string;
  description: string;
  /** Why this backend cannot run here (no adapter …), or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  /** Prepares a model to run; may repack weights for the backend's kernels. */
  load(model: LlamaModel, options?: { maxSeqLen?: number }): Promise<ModelRunner>;
}
