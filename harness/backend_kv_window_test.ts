/**
 * The WebGPU runner's quantized KV cache keeps float rows only for a window of the latest positions
 * (`kernels/webgpu/kv_quant_wgsl.ts`): a prompt longer than the window, in slices, then decoding
 * across key groups and blocks gives the CPU's logits; GPU-resident greedy decoding and cuts back
 * within the window continue exactly, and a cut back past it is refused; a decode step adds no
 * dispatch; and the cache's buffers at 2048 positions (TinyLlama's KV shape) are a fraction of the
 * float32 cache's.
 *
 * @module
 */
import assert from "node:assert/strict";
import { adapterUnavailable, getGpu } from "../kernels/webgpu/device.ts";
import {
  createWebGpuBackend,
  type DispatchTime,
  KvWindowError,
  WebGpuRunner,
} from "../kernels/webgpu/backend.ts";
import { kvKeyWords, kvQuantLayout, kvValueWords } from "../kernels/webgpu/kv_quant_wgsl.ts";
import { cpuBackend } from "../kernels/cpu/backend.ts";
import { argmaxRow } from "./tasks/nll.ts";
import { dense, type LlamaModel } from "../core/model.ts";
import { pseudoRandom, relativeError } from "../core/test_values.ts";
import { hasShared, sharedPath } from "../core/shared.ts";
import { loadLlama2c } from "./models/llama2c.ts";
import { syntheticModel } from "./backend_conformance.ts";

const unavailable = await adapterUnavailable();
const STORIES = ["models", "stories260K", "stories260K.bin"] as const;
const KV4 = { format: "int4", group: 16, residual: 32 };

/** Bytes of one layer's codes and sides (keys and values) for a cache of `n` positions. */
function codeBytes(model: LlamaModel, n: number): number {
  const c = model.config;
  const l = kvQuantLayout(model.runtime!.kvCache!, c.nKvHeads, c.headDim, n);
  return 4 * (kvKeyWords(l) + kvValueWords(l));
}

Deno.test({
  name: "webgpu KV window: a prompt past the window, decoding, greedy steps and cuts back",
  ignore: unavailable !== undefined || !hasShared(...STORIES),
  async fn() {
    const base = await loadLlama2c(
      sharedPath(...STORIES),
      sharedPath("models", "stories260K", "tok512.bin"),
    );
    const model: LlamaModel = { ...base, runtime: { kvCache: KV4 } };
    const c = model.config;
    const kvDim = c.nKvHeads * c.headDim;
    // The window is KIVI's block of 32 plus the runner's rewind, far shorter than the prompt;
    // bindings of 16 KiB make slices of 8 tokens (vocab 512 floats a row), so the prompt is also
    // run as steps that overwrite window rows the step before read.
    const maxSeqLen = 192;
    const backend = createWebGpuBackend({ name: "webgpu-kv-window", maxBinding: 16384 });
    const runner = await backend.load(model, { maxSeqLen });
    assert.ok(runner instanceof WebGpuRunner);
    try {
      const windowRows = (runner.kvCacheBytes / c.nLayers - codeBytes(model, maxSeqLen)) /
        (2 * kvDim * 4);
      const prompt = [...pseudoRandom(100, 41)].map((v) => Math.floor((v + 0.5) * c.vocabSize));
      assert.ok(windowRows >= 32 && windowRows < prompt.length / 1.5, `window ${windowRows}`);

      // The prompt in one call (13 slices), then greedy steps one token at a time past the
      // key groups ending at 112 and 128 and the key block ending at 128.
      const vocab = c.vocabSize;
      const steps = 40;
      const got = new Float32Array((prompt.length + steps) * vocab);
      got.set(await runner.forward(prompt, 0));
      const picks = [argmaxRow(got, vocab, prompt.length - 1)];
      for (let i = 0; i < steps; i++) {
        const logits = await runner.forward([picks[i]!], prompt.length + i);
        got.set(logits, (prompt.length + i) * vocab);
        picks.push(argmaxRow(logits, vocab, 0));
      }
      const cpu = await cpuBackend.load(model, { maxSeqLen });
      const want = await cpu.forward([...prompt, ...picks.slice(0, steps)], 0);
      const error = relativeError(got, want);
      // As the conformance suite's KV cases: equal codes, keys and values within float rounding.
      assert.ok(error <= 1e-3, `logits against the CPU's: relative error ${error}`);

      // GPU-resident greedy decoding picks the same tokens; a cut back of 11 positions continues.
      runner.reset();
      await runner.forwardLast(prompt, 0);
      const P = prompt.length;
      assert.deepEqual([...await runner.decodeGreedy(picks[0]!, P, 16)], picks.slice(1, 17));
      runner.truncate(P + 5);
      assert.deepEqual([...await runner.decodeGreedy(picks[5]!, P + 5, 16)], picks.slice(6, 22));
      // Back past what the window still holds: refused, and the cache goes on where it was.
      assert.throws(() => runner.truncate(P + 21 - (windowRows - 32) - 2), KvWindowError);
      assert.deepEqual([...await runner.decodeGreedy(picks[21]!, P + 21, 4)], picks.slice(22, 26));

      if ((await getGpu()).timestamps) {
        // Dispatches a layer: the stacked q/k/v split writes a one-token step's row into the
        // window itself (decoding adds none); a longer step copies its rows in after attention.
        const count = (rows: DispatchTime[], label: string) =>
          rows.find((r) => r.label === label)?.count ?? 0;
        const decode = await runner.profile([picks[25]!], P + 25);
        assert.equal(count(decode, "kv window write"), 0);
        assert.equal(count(decode, "kv quantize keys"), c.nLayers);
        const prefill = await runner.profile(prompt.slice(0, 8), P + 25);
        assert.equal(count(prefill, "kv window write"), c.nLayers);
      }
    } finally {
      runner.dispose();
    }
  },
});

/** TinyLlama-1.1B's KV shape (22 layers of 4 KV heads of 64) on a small model of `layers`. */
function kvShaped(layers: number, kvCache?: { format: string; group: number; residual: number }) {
  const synthetic = syntheticModel();
  const [dim, nHeads, nKvHeads, headDim, hiddenDim] = [64, 4, 4, 64, 64];
  const qDim = nHeads * headDim;
  const m = (rows: number, cols: number) =>
    dense(rows, cols, pseudoRandom(rows * cols, rows + cols).map((v) => 0.1 * v));
  const model: LlamaModel = {
    ...synthetic,
    config: { ...synthetic.config, dim, hiddenDim, nLayers: layers, nHeads, nKvHeads, headDim },
    weights: {
      ...synthetic.weights,
      tokenEmbedding: pseudoRandom(synthetic.config.vocabSize * dim, 3),
      layers: Array.from({ length: layers }, () => ({
        attnNorm: new Float32Array(dim).fill(1),
        wq: m(qDim, dim),
        wk: m(nKvHeads * headDim, dim),
        wv: m(nKvHeads * headDim, dim),
        wo: m(dim, qDim),
        ffnNorm: new Float32Array(dim).fill(1),
        w1: m(hiddenDim, dim),
        w2: m(dim, hiddenDim),
        w3: m(hiddenDim, dim),
      })),
      finalNorm: new Float32Array(dim).fill(1),
      output: m(synthetic.config.vocabSize, dim),
    },
  };
  return kvCache ? { ...model, runtime: { kvCache } } : model;
}

Deno.test({
  name: "webgpu KV window: KV4's buffers at 2048 positions are codes, sides and a window",
  ignore: unavailable !== undefined,
  async fn() {
    const layers = 2;
    const n = 2048;
    const kvDim = 4 * 64;
    const bytes = async (model: LlamaModel) => {
      const runner = await createWebGpuBackend().load(model, { maxSeqLen: n });
      try {
        assert.ok(runner instanceof WebGpuRunner);
        return runner.kvCacheBytes;
      } finally {
        runner.dispose();
      }
    };
    const f32 = await bytes(kvShaped(layers));
    const kv4Model = kvShaped(layers, { format: "int4", group: 32, residual: 128 });
    const kv4 = await bytes(kv4Model);
    assert.equal(f32, layers * 2 * n * kvDim * 4);
    // A window of KIVI's 128 positions and 32 of rewind beside 4-bit codes and f16 sides.
    const window = 160;
    assert.equal(kv4, layers * (2 * window * kvDim * 4 + codeBytes(kv4Model, n)));
    assert.ok(kv4 < 0.25 * f32, `KV4 ${kv4} B against f32 ${f32} B`);
  },
});
