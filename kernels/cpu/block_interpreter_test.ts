import assert from "node:assert/strict";
import { CpuRunner } from "./backend.ts";
import {
  type BlockValues,
  cpuBlockKernels,
  MissingBlockValueError,
  runBlock,
} from "./block_interpreter.ts";
import { attention, matmul, rmsnorm, rope } from "./ops.ts";
import { QuantizedKvCache } from "./kv_cache.ts";
import { hadamardTransform } from "./hadamard.ts";
import { blockShape, blockSteps, producerIndex } from "../../core/graph.ts";
import {
  dense,
  type LayerWeights,
  type LlamaConfig,
  type LlamaModel,
  type RuntimeQuantization,
  type Tokenizer,
} from "../../core/model.ts";
import { ropeInverseFrequencies } from "../../core/rope.ts";
import { seededRandom } from "../../core/random.ts";

/**
 * A random 2-layer model with every optional tensor (q, k, v, o biases, q/k head norms), grouped
 * query attention and heads wider than `dim / nHeads` (as Qwen3 sets `head_dim`); with `hadamard`,
 * layer 1 also has every run-time Hadamard transform (an MLP 48 = 12 · 4 wide).
 */
function fullModel(runtime?: RuntimeQuantization, hadamard = false): LlamaModel {
  const random = seededRandom(3, "block interpreter test");
  const values = (n: number, scale = 0.3, offset = 0) =>
    Float32Array.from({ length: n }, () => offset + scale * (2 * random() - 1));
  const config: LlamaConfig = {
    dim: 24,
    hiddenDim: hadamard ? 48 : 40,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 2,
    headDim: 8,
    vocabSize: 30,
    maxSeqLen: 16,
    ropeTheta: 10000,
    normEps: 1e-5,
    ropeStyle: "half",
  };
  const { dim, hiddenDim: hidden, headDim } = config;
  const qDim = config.nHeads * headDim;
  const kvDim = config.nKvHeads * headDim;
  const layer = (): LayerWeights => ({
    attnNorm: values(dim, 0.2, 1),
    wq: dense(qDim, dim, values(qDim * dim)),
    wk: dense(kvDim, dim, values(kvDim * dim)),
    wv: dense(kvDim, dim, values(kvDim * dim)),
    wo: dense(dim, qDim, values(dim * qDim)),
    ffnNorm: values(dim, 0.2, 1),
    w1: dense(hidden, dim, values(hidden * dim)),
    w2: dense(dim, hidden, values(dim * hidden)),
    w3: dense(hidden, dim, values(hidden * dim)),
    bq: values(qDim),
    bk: values(kvDim),
    bv: values(kvDim),
    bo: values(dim),
    qNorm: values(headDim, 0.2, 1),
    kNorm: values(headDim, 0.2, 1),
  });
  return {
    config,
    weights: {
      tokenEmbedding: values(config.vocabSize * dim, 1),
      layers: [
        layer(),
        hadamard ? { ...layer(), hadamard: { qk: true, attention: true, down: true } } : layer(),
      ],
      finalNorm: values(dim, 0.2, 1),
      output: dense(config.vocabSize, dim, values(config.vocabSize * dim)),
      tiedEmbeddings: false,
    },
    // The runner never tokenizes.
    tokenizer: undefined as unknown as Tokenizer,
    runtime,
  };
}

/** The CPU runner's block as it was written by hand before it interpreted the steps. */
class HandWrittenRunner {
  readonly #model: LlamaModel;
  readonly #keys: Float32Array[];
  readonly #values: Float32Array[];
  readonly #quantizedKv: QuantizedKvCache | undefined;

  constructor(model: LlamaModel) {
    const c = model.config;
    this.#model = model;
    const kvDim = c.nKvHeads * c.headDim;
    this.#keys = model.weights.layers.map(() => new Float32Array(c.maxSeqLen * kvDim));
    this.#values = model.weights.layers.map(() => new Float32Array(c.maxSeqLen * kvDim));
    const kv = model.runtime?.kvCache;
    this.#quantizedKv = kv &&
      new QuantizedKvCache(kv, c.nLayers, c.maxSeqLen, c.nKvHeads, c.headDim);
  }

  forward(tokens: number[], pos: number): Float32Array {
    const { config: c, weights: w } = this.#model;
    const T = tokens.length;
    const dim = c.dim;
    const kvDim = c.nKvHeads * c.headDim;
    const qDim = c.nHeads * c.headDim;
    const invFreq = ropeInverseFrequencies(c);
    const act = this.#model.runtime?.activations;
    const x = new Float32Array(T * dim);
    tokens.forEach((id, t) => x.set(w.tokenEmbedding.subarray(id * dim, (id + 1) * dim), t * dim));
    const xb = new Float32Array(T * dim);
    const q = new Float32Array(T * qDim);
    const k = new Float32Array(T * kvDim);
    const v = new Float32Array(T * kvDim);
    const att = new Float32Array(T * qDim);
    const proj = new Float32Array(T * dim);
    const gate = new Float32Array(T * c.hiddenDim);
    const up = new Float32Array(T * c.hiddenDim);
    const addBias = (out: Float32Array, bias: Float32Array) => {
      for (let base = 0; base < out.length; base += bias.length) {
        for (let i = 0; i < bias.length; i++) out[base + i]! += bias[i]!;
      }
    };
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
      rope(q, c.nHeads, c.headDim, pos, c.ropeTheta, c.ropeStyle, invFreq);
      rope(k, c.nKvHeads, c.headDim, pos, c.ropeTheta, c.ropeStyle, invFreq);
      if (layer.hadamard?.qk) {
        hadamardTransform(q, c.headDim);
        hadamardTransform(k, c.headDim);
      }
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
      if (layer.hadamard?.attention) {
        hadamardTransform(att, c.headDim);
        hadamardTransform(att, qDim);
      }
      matmul(proj, att, layer.wo, act);
      if (layer.bo) addBias(proj, layer.bo);
      for (let i = 0; i < x.length; i++) x[i]! += proj[i]!;
      rmsnorm(xb, x, layer.ffnNorm, c.normEps);
      matmul(gate, xb, layer.w1, act);
      matmul(up, xb, layer.w3, act);
      for (let i = 0; i < gate.length; i++) {
        const g = gate[i]!;
        gate[i] = (g / (1 + Math.exp(-g))) * up[i]!;
      }
      if (layer.hadamard?.down) hadamardTransform(gate, c.hiddenDim);
      matmul(proj, gate, layer.w2, act);
      for (let i = 0; i < x.length; i++) x[i]! += proj[i]!;
    }
    rmsnorm(x, x, w.finalNorm, c.normEps);
    const logits = new Float32Array(T * c.vocabSize);
    matmul(logits, x, w.output);
    return logits;
  }
}

Deno.test("block interpreter: every step kind, bit for bit the hand-written block (prefill, decode, run-time quantization)", () => {
  const runtimes: (RuntimeQuantization | undefined)[] = [
    undefined,
    { activations: "int8" },
    { kvCache: { format: "int4", group: 0, residual: 2 } },
  ];
  const ops = new Set(
    blockSteps(blockShape(fullModel(undefined, true).weights.layers[1]!)).map((s) => s.op),
  );
  assert.deepEqual(
    [...ops].sort(),
    ["add", "attention", "hadamard", "head_rmsnorm", "linear", "rmsnorm", "rope", "swiglu"],
  );
  for (
    const [runtime, hadamard] of [
      ...runtimes.map((r) => [r, false] as const),
      [runtimes[2], true] as const,
      [runtimes[1], true] as const,
    ]
  ) {
    const model = fullModel(runtime, hadamard);
    const runner = new CpuRunner(model);
    const reference = new HandWrittenRunner(model);
    // A prefill of 5 tokens, then decode steps of one and two.
    for (const [tokens, pos] of [[[1, 7, 3, 29, 0], 0], [[12], 5], [[4, 4], 6]] as const) {
      const got = runner.forwardSync([...tokens], pos);
      assert.deepEqual(got, reference.forward([...tokens], pos), `${JSON.stringify(runtime)}`);
    }
  }
});

Deno.test("block interpreter: runs a range of steps and refuses a value it does not have", () => {
  const model = fullModel();
  const c = model.config;
  const layer = model.weights.layers[0]!;
  const steps = blockSteps(blockShape(layer));
  const x = model.weights.tokenEmbedding.slice(0, 3 * c.dim);
  const whole: BlockValues = new Map([["x", x]]);
  runBlock(steps, layer, c, whole, cpuBlockKernels(c, 0, 3));
  const split: BlockValues = new Map([["x", x]]);
  const cut = producerIndex(steps, "att") + 1;
  runBlock(steps, layer, c, split, cpuBlockKernels(c, 0, 3), 0, cut);
  assert.ok(split.has("att") && !split.has("h"));
  runBlock(steps, layer, c, split, cpuBlockKernels(c, 0, 3), cut);
  assert.deepEqual(split.get("out"), whole.get("out"));
  assert.throws(
    () => runBlock(steps, layer, c, new Map(), cpuBlockKernels(c, 0, 3)),
    (e) => e instanceof MissingBlockValueError && /"x" is not computed/.test(e.message),
  );
  assert.throws(() => cpuBlockKernels(c, 2, 3).attention(x, x, x), /position 0, not 2/);
});
