/**
 * The CPU backend: the numerical reference. Runs a {@linkcode LlamaModel} by interpreting its
 * blocks' steps (`core/graph.ts`, `block_interpreter.ts`) on the kernels of `ops.ts`, with a
 * float32 KV cache, plus the run-time quantization the model asks for
 * (`model.runtime`: per-token activations before each transformer linear, a KIVI-style quantized
 * KV cache, `kv_cache.ts`).
 *
 * @module
 */
import type { Backend, BackendOps, ModelRunner } from "../backend.ts";
import type { LlamaModel } from "../../core/model.ts";
import { attention, matmul, rmsnorm, rope, swiglu } from "./ops.ts";
import { ropeInverseFrequencies } from "../../core/rope.ts";
import { QuantizedKvCache } from "./kv_cache.ts";
import { type BlockValues, cpuBlockKernels, runBlock } from "./block_interpreter.ts";
import { BLOCK_OUTPUT, type BlockStep, modelGraph } from "../../core/graph.ts";
import { RUNTIME_FORMATS } from "../formats/runtime_quant.ts";
import { GGML_ACTIVATIONS } from "../formats/ggml_activations.ts";

/** A model prepared for the CPU. */
export class CpuRunner implements ModelRunner {
  readonly #model: LlamaModel;
  readonly #maxSeqLen: number;
  readonly #keys: Float32Array[];
  readonly #values: Float32Array[];
  readonly #invFreq: Float64Array;
  /** Element format transformer-linear inputs are quantized to, per token. */
  readonly #activations: string | undefined;
  /** Whether values are rounded as llama.cpp's CPU backend rounds them (`activations: ggml`). */
  readonly #ggml: boolean;
  readonly #quantizedKv: QuantizedKvCache | undefined;
  /** The float32 caches, and a quantized cache's dequantized copy of the same size. */
  readonly kvCacheBytes: number;
  /** Each layer's steps (`core/graph.ts`), which {@linkcode runBlock} interprets. */
  readonly #steps: BlockStep[][];
  #length = 0;

  constructor(model: LlamaModel, maxSeqLen = model.config.maxSeqLen) {
    this.#model = model;
    this.#maxSeqLen = maxSeqLen;
    const kvDim = model.config.nKvHeads * model.config.headDim;
    this.#keys = model.weights.layers.map(() => new Float32Array(maxSeqLen * kvDim));
    this.#values = model.weights.layers.map(() => new Float32Array(maxSeqLen * kvDim));
    this.#invFreq = ropeInverseFrequencies(model.config);
    this.#steps = modelGraph(model.weights).blocks;
    const { activations, kvCache } = model.runtime ?? {};
    this.#activations = activations;
    this.#ggml = activations === GGML_ACTIVATIONS;
    this.#quantizedKv = kvCache &&
      new QuantizedKvCache(
        kvCache,
        model.config.nLayers,
        maxSeqLen,
        model.config.nKvHeads,
        model.config.headDim,
      );
    this.kvCacheBytes = 2 * model.config.nLayers * maxSeqLen * kvDim * 4 * (kvCache ? 2 : 1);
  }

  forward(tokens: ArrayLike<number>, pos: number): Promise<Float32Array> {
    return Promise.resolve(this.forwardSync(tokens, pos));
  }

  /** Synchronous forward pass (the CPU needs no await). */
  forwardSync(tokens: ArrayLike<number>, pos: number): Float32Array {
    const { config: c, weights: w } = this.#model;
    const T = tokens.length;
    if (pos !== this.#length) {
      throw new RangeError(`Forward at position ${pos}, but the KV cache holds ${this.#length}`);
    }
    if (pos + T > this.#maxSeqLen) {
      throw new RangeError(`Context ${pos + T} exceeds the runner's maximum ${this.#maxSeqLen}`);
    }
    const dim = c.dim;
    const kvDim = c.nKvHeads * c.headDim;
    const x = new Float32Array(T * dim);
    for (let t = 0; t < T; t++) {
      const id = tokens[t]!;
      if (!(id >= 0 && id < c.vocabSize)) throw new RangeError(`Token id ${id} is out of range`);
      x.set(w.tokenEmbedding.subarray(id * dim, (id + 1) * dim), t * dim);
    }
    // One set of kernels for the pass (RoPE's angles tabulated once); attention reads the
    // current layer's cache.
    let l = 0;
    const kernels = cpuBlockKernels(c, pos, T, {
      activations: this.#activations,
      invFreq: this.#invFreq,
      attention: (q, k, v) => {
        const keys = this.#keys[l]!;
        const cached = this.#values[l]!;
        // llama.cpp keeps its KV cache in f16 (`activations: ggml` rounds as llama.cpp does).
        keys.set(this.#ggml ? k.map(Math.f16round) : k, pos * kvDim);
        cached.set(this.#ggml ? v.map(Math.f16round) : v, pos * kvDim);
        this.#quantizedKv?.update(l, keys, cached, pos, pos + T);
        const out = new Float32Array(q.length);
        attention(
          out,
          q,
          keys,
          cached,
          pos,
          c.nHeads,
          c.nKvHeads,
          c.headDim,
          this.#quantizedKv?.view(l),
        );
        return out;
      },
    });
    let values: BlockValues = new Map([["x", x]]);
    for (l = 0; l < c.nLayers; l++) {
      runBlock(this.#steps[l]!, w.layers[l]!, c, values, kernels);
      values = new Map([["x", values.get(BLOCK_OUTPUT)!]]);
    }
    const out = values.get("x")!;
    this.#length = pos + T;
    rmsnorm(out, out, w.finalNorm, c.normEps);
    const logits = new Float32Array(T * c.vocabSize);
    // llama.cpp rounds the classifier's input too (`activations: ggml`); other settings do not.
    matmul(
      logits,
      out,
      w.output,
      this.#activations === GGML_ACTIVATIONS ? GGML_ACTIVATIONS : undefined,
    );
    return logits;
  }

  reset(): void {
    this.#length = 0;
  }

  dispose(): void {}
}

/** The reference ops behind the {@linkcode BackendOps} interface (copies in, new arrays out). */
export const cpuOps: BackendOps = {
  matmul(x, w, activations) {
    const out = new Float32Array((x.length / w.cols) * w.rows);
    matmul(out, x, w, activations);
    return Promise.resolve(out);
  },
  rmsnorm(x, weight, eps) {
    const out = new Float32Array(x.length);
    rmsnorm(out, x, weight, eps);
    return Promise.resolve(out);
  },
  rope(x, nHeads, headDim, pos, theta, style) {
    const out = x.slice();
    rope(out, nHeads, headDim, pos, theta, style);
    return Promise.resolve(out);
  },
  swiglu(gate, up) {
    const out = gate.slice();
    swiglu(out, up);
    return Promise.resolve(out);
  },
  attention(q, keyCache, valueCache, pos, nHeads, nKvHeads, headDim) {
    const out = new Float32Array(q.length);
    attention(out, q, keyCache, valueCache, pos, nHeads, nKvHeads, headDim);
    return Promise.resolve(out);
  },
};

/** The CPU backend. */
export const cpuBackend: Backend = {
  name: "cpu",
  description: "float32 reference kernels on the CPU",
  unavailable: () => Promise.resolve(undefined),
  runtimeQuantization: { activations: [...RUNTIME_FORMATS, GGML_ACTIVATIONS], kvCache: true },
  load: (model, options) => Promise.resolve(new CpuRunner(model, options?.maxSeqLen)),
  ops: cpuOps,
};
