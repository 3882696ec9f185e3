/**
 * The CPU backend: the numerical reference. Runs a {@linkcode LlamaModel} with the kernels of
 * `ops.ts` and a float32 KV cache, plus the run-time quantization the model asks for
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
import { RUNTIME_FORMATS } from "../formats/runtime_quant.ts";

/** A model prepared for the CPU. */
export class CpuRunner implements ModelRunner {
  readonly #model: LlamaModel;
  readonly #maxSeqLen: number;
  readonly #keys: Float32Array[];
  readonly #values: Float32Array[];
  readonly #invFreq: Float64Array;
  /** Element format transformer-linear inputs are quantized to, per token. */
  readonly #activations: string | undefined;
  readonly #quantizedKv: QuantizedKvCache | undefined;
  #length = 0;

  constructor(model: LlamaModel, maxSeqLen = model.config.maxSeqLen) {
    this.#model = model;
    this.#maxSeqLen = maxSeqLen;
    const kvDim = model.config.nKvHeads * model.config.headDim;
    this.#keys = model.weights.layers.map(() => new Float32Array(maxSeqLen * kvDim));
    this.#values = model.weights.layers.map(() => new Float32Array(maxSeqLen * kvDim));
    this.#invFreq = ropeInverseFrequencies(model.config);
    const { activations, kvCache } = model.runtime ?? {};
    this.#activations = activations;
    this.#quantizedKv = kvCache &&
      new QuantizedKvCache(
        kvCache,
        model.config.nLayers,
        maxSeqLen,
        model.config.nKvHeads,
        model.config.headDim,
      );
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
    // Query width may differ from the model width (Qwen3 sets head_dim explicitly).
    const qDim = c.nHeads * c.headDim;
    const x = new Float32Array(T * dim);
    for (let t = 0; t < T; t++) {
      const id = tokens[t]!;
      if (!(id >= 0 && id < c.vocabSize)) throw new RangeError(`Token id ${id} is out of range`);
      x.set(w.tokenEmbedding.subarray(id * dim, (id + 1) * dim), t * dim);
    }
    const xb = new Float32Array(T * dim);
    const q = new Float32Array(T * qDim);
    const k = new Float32Array(T * kvDim);
    const v = new Float32Array(T * kvDim);
    const att = new Float32Array(T * qDim);
    const proj = new Float32Array(T * dim);
    const gate = new Float32Array(T * c.hiddenDim);
    const up = new Float32Array(T * c.hiddenDim);
    const act = this.#activations;
    for (let l = 0; l < c.nLayers; l++) {
      const layer = w.layers[l]!;
      rmsnorm(xb, x, layer.attnNorm, c.normEps);
      matmul(q, xb, layer.wq, act);
      matmul(k, xb, layer.wk, act);
      matmul(v, xb, layer.wv, act);
      if (layer.bq) addBias(q, layer.bq);
      if (layer.bk) addBias(k, layer.bk);
      if (layer.bv) addBias(v, layer.bv);
      if (layer.qNorm) rmsnorm(q, q, layer.qNorm, c.normEps);
      if (layer.kNorm) rmsnorm(k, k, layer.kNorm, c.normEps);
      rope(q, c.nHeads, c.headDim, pos, c.ropeTheta, c.ropeStyle, this.#invFreq);
      rope(k, c.nKvHeads, c.headDim, pos, c.ropeTheta, c.ropeStyle, this.#invFreq);
      this.#keys[l]!.set(k, pos * kvDim);
      this.#values[l]!.set(v, pos * kvDim);
      this.#quantizedKv?.update(l, this.#keys[l]!, this.#values[l]!, pos, pos + T);
      attention(
        att,
        q,
        this.#keys[l]!,
        this.#values[l]!,
        pos,
        c.nHeads,
        c.nKvHeads,
        c.headDim,
        this.#quantizedKv?.view(l),
      );
      matmul(proj, att, layer.wo, act);
      if (layer.bo) addBias(proj, layer.bo);
      for (let i = 0; i < x.length; i++) x[i]! += proj[i]!;
      rmsnorm(xb, x, layer.ffnNorm, c.normEps);
      matmul(gate, xb, layer.w1, act);
      matmul(up, xb, layer.w3, act);
      swiglu(gate, up);
      matmul(proj, gate, layer.w2, act);
      for (let i = 0; i < x.length; i++) x[i]! += proj[i]!;
    }
    this.#length = pos + T;
    rmsnorm(x, x, w.finalNorm, c.normEps);
    const logits = new Float32Array(T * c.vocabSize);
    matmul(logits, x, w.output);
    return logits;
  }

  reset(): void {
    this.#length = 0;
  }

  dispose(): void {}
}

/** Adds `bias` to every row of `x`. */
function addBias(x: Float32Array, bias: Float32Array): void {
  for (let base = 0; base < x.length; base += bias.length) {
    for (let i = 0; i < bias.length; i++) x[base + i]! += bias[i]!;
  }
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
  runtimeQuantization: { activations: RUNTIME_FORMATS, kvCache: true },
  load: (model, options) => Promise.resolve(new CpuRunner(model, options?.maxSeqLen)),
  ops: cpuOps,
};
