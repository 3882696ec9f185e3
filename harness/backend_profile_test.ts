/**
 * `WebGpuRunner.profile` (the per-dispatch GPU timings `fixtures/scale/profile.ts` prints) on the
 * conformance suite's synthetic model: every kind of dispatch a prefill and a decode step run is
 * timed and counted, the KV cache's length is left alone, and a pass that does not continue the
 * cache is refused. Also the fused program a layer compiles to where its matrices stack (dispatch
 * counts, and logits against the CPU's), and windows scored back to back (`forwardScoresMany`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { adapterUnavailable, getGpu } from "../kernels/webgpu/device.ts";
import { createWebGpuBackend, webgpuBackend, WebGpuRunner } from "../kernels/webgpu/backend.ts";
import { quantizeInt } from "../kernels/formats/int.ts";
import { syntheticModel } from "./backend_conformance.ts";
import { cpuBackend } from "../kernels/cpu/backend.ts";
import type { LlamaModel, Matrix } from "../core/model.ts";

const unavailable = await adapterUnavailable();
const noTimestamps = unavailable === undefined && !(await getGpu()).timestamps;

Deno.test({
  name: "webgpu profile: every dispatch of a prefill and a decode step, timed and counted",
  ignore: unavailable !== undefined || noTimestamps,
  async fn() {
    const model = syntheticModel();
    const runner = await webgpuBackend.load(model);
    assert.ok(runner instanceof WebGpuRunner);
    try {
      const layers = model.config.nLayers;
      const prefill = await runner.profile([3, 4, 5, 6, 7, 8], 0);
      const count = (rows: typeof prefill, label: string) =>
        rows.find((r) => r.label === label)?.count ?? 0;
      // Two RMSNorms a layer and the final one; one attention a layer (the prefill kernel).
      assert.equal(count(prefill, "rmsnorm"), 2 * layers + 1);
      assert.equal(count(prefill, "attention"), layers);
      assert.equal(count(prefill, "attention combine"), 0);
      assert.ok(prefill.every((r) => r.ms >= 0 && r.count > 0));
      assert.ok(prefill.some((r) => r.label.startsWith("matmul ") && r.ms > 0));
      for (let i = 1; i < prefill.length; i++) assert.ok(prefill[i - 1]!.ms >= prefill[i]!.ms);
      // The profile wrote the cache but left its length: a real pass still starts at 0.
      await assert.rejects(runner.profile([3], 6), RangeError);
      await runner.forward([3, 4, 5, 6, 7, 8], 0);
      // Decoding: the split attention once a layer; the output projection's GEMV combines its
      // partial results, so the combine has no dispatch.
      const decode = await runner.profile([9], 6);
      assert.equal(count(decode, "attention"), layers);
      assert.equal(count(decode, "attention combine"), 0);
      // Mixed formats and biases: q/k/v and gate/up stay separate matmuls.
      assert.equal(count(decode, "qkv rope scatter"), 0);
      assert.equal(count(decode, "rope"), 2 * layers);
      await assert.rejects(runner.profile([], 6), RangeError);
    } finally {
      runner.dispose();
    }
  },
});

/**
 * The synthetic model with q/k/v (int4-g16) and gate/up (f32) in one format each, no biases, no
 * q/k norms (so a decode layer's dispatches are the fused program's only).
 */
/** Dispatches a profiled decode step runs outside its layers: the LM head. */
const DECODE_EXTRA = 1;

function stackableModel(): LlamaModel {
  const model = syntheticModel();
  const dense = (m: Matrix, seed: number): Matrix => ({
    kind: "dense",
    rows: m.rows,
    cols: m.cols,
    data: Float32Array.from({ length: m.rows * m.cols }, (_, i) => 0.3 * Math.sin(0.37 * i + seed)),
  });
  const int4 = (m: Matrix, seed: number): Matrix => {
    const { data } = dense(m, seed) as { data: Float32Array };
    return quantizeInt(data, m.rows, m.cols, { bits: 4, group: 16, symmetric: false });
  };
  const layers = model.weights.layers.map((l, i) => ({
    ...l,
    wq: int4(l.wq, 10 * i + 1),
    wk: int4(l.wk, 10 * i + 2),
    wv: int4(l.wv, 10 * i + 3),
    w1: dense(l.w1, 10 * i + 4),
    w3: dense(l.w3, 10 * i + 5),
    bq: undefined,
    bk: undefined,
    bv: undefined,
    bo: undefined,
    qNorm: undefined,
    kNorm: undefined,
  }));
  return { ...model, weights: { ...model.weights, layers } };
}

Deno.test({
  name:
    "webgpu stacked q/k/v and gate/up, RMSNorm and SwiGLU in the decode GEMVs: logits as the CPU's",
  ignore: unavailable !== undefined || noTimestamps,
  async fn() {
    const model = stackableModel();
    const layers = model.config.nLayers;
    const runner = await webgpuBackend.load(model);
    assert.ok(runner instanceof WebGpuRunner);
    try {
      const tokens = [3, 4, 5, 6, 7, 8];
      const prefill = await runner.profile(tokens, 0);
      const count = (rows: typeof prefill, label: string) =>
        rows.find((r) => r.label === label)?.count ?? 0;
      const matmuls = (rows: typeof prefill) =>
        rows.filter((r) => /^matmul \d+x\d+$/.test(r.label)).reduce((n, r) => n + r.count, 0);
      const decode = await runner.profile([9], 0);
      for (const rows of [prefill, decode]) {
        assert.equal(matmuls(rows), 4 * layers + 1);
        assert.equal(count(rows, "rope"), 0);
      }
      // Decoding, the split attention kernel rotates q and k and caches the step's k and v.
      assert.equal(count(prefill, "qkv rope scatter"), layers);
      assert.equal(count(decode, "qkv rope scatter"), 0);
      // Decode GEMVs normalize their own input and apply SwiGLU as they load it: neither has a
      // dispatch of its own there.
      assert.equal(count(prefill, "rmsnorm"), 2 * layers + 1);
      assert.equal(count(prefill, "swiglu"), layers);
      assert.equal(count(decode, "rmsnorm"), 0);
      assert.equal(count(decode, "swiglu"), 0);
      assert.equal(count(decode, "attention combine"), 0);
      // A decode layer: q/k/v GEMV, split attention, o GEMV, gate/up GEMV, down GEMV; then the
      // LM head.
      const dispatches = (rows: typeof prefill) => rows.reduce((n, r) => n + r.count, 0);
      assert.equal(dispatches(decode), 5 * layers + DECODE_EXTRA);
    } finally {
      runner.dispose();
    }
    // Prefill, then decode steps reading what the scatter or the attention kernel cached, with each
    // float-GEMV variant
    // (staged activations, direct loads, prescaled codes) reading the fused inputs.
    // One-token steps whose attention spans one, two and three blocks of 64 positions (the o
    // GEMV combines that many partial results), between steps of 3 and more tokens (no combine).
    const filler = (n: number) => Array.from({ length: n }, (_, i) => (i * 7 + n) % 96);
    const steps = [[3, 4, 5, 6, 7, 8], [9], [10], [11, 12, 13], filler(50), [1], [2], [4], [5]];
    steps.push(filler(61), [6], [7]);
    const maxSeqLen = 192;
    const cpu = await cpuBackend.load(model, { maxSeqLen });
    try {
      for (const gemv of [{}, { gemvDirect: true }, { gemvPrescale: true }]) {
        const gpu = await createWebGpuBackend({ gemv }).load(model, { maxSeqLen });
        cpu.reset();
        try {
          let pos = 0;
          for (const step of steps) {
            const [got, want] = [await gpu.forward(step, pos), await cpu.forward(step, pos)];
            pos += step.length;
            const worst = want.reduce((m, w, i) => Math.max(m, Math.abs(w - got[i]!)), 0);
            assert.ok(worst < 1e-4, `${JSON.stringify(gemv)}: logits differ by ${worst} at ${pos}`);
          }
        } finally {
          gpu.dispose();
        }
      }
    } finally {
      cpu.dispose();
    }
  },
});

Deno.test({
  name: "webgpu forwardScoresMany: windows back to back score as one at a time",
  ignore: unavailable !== undefined,
  async fn() {
    const runner = await webgpuBackend.load(syntheticModel());
    assert.ok(runner instanceof WebGpuRunner);
    try {
      const windows = [[3, 4, 5, 6, 7, 8, 9], [10, 11, 12], [13, 14, 15, 16, 17]].map((tokens) => ({
        tokens,
        targets: Int32Array.from(tokens, (t, i) => (i % 3 === 2 ? -1 : (t * 7) % 96)),
      }));
      const many = await runner.forwardScoresMany(windows);
      assert.equal(many.length, windows.length);
      for (const [i, { tokens, targets }] of windows.entries()) {
        runner.reset();
        const one = await runner.forwardScores(tokens, 0, targets);
        assert.deepEqual([...many[i]!.argmax], [...one.argmax], `window ${i} argmax`);
        assert.deepEqual(
          [...many[i]!.nll].map((v) => Number.isNaN(v) ? "none" : v),
          [...one.nll].map((v) => Number.isNaN(v) ? "none" : v),
          `window ${i} nll`,
        );
      }
      assert.deepEqual(await runner.forwardScoresMany([]), []);
    } finally {
      runner.dispose();
    }
  },
});

Deno.test({
  name: "webgpu forwardLast: the last row of forward, over several slices",
  ignore: unavailable !== undefined,
  async fn() {
    const model = syntheticModel();
    // A binding of 8 KB holds 21 rows of the synthetic model's logits: 23 tokens take 2 slices.
    const runner = await createWebGpuBackend({ maxBinding: 8192 }).load(model);
    assert.ok(runner instanceof WebGpuRunner && runner.forwardLast);
    try {
      const tokens = Array.from({ length: 23 }, (_, i) => (i * 5 + 3) % 96);
      const all = await runner.forward(tokens, 0);
      runner.reset();
      const last = await runner.forwardLast(tokens, 0);
      const vocab = model.config.vocabSize;
      assert.deepEqual([...last], [...all.subarray((tokens.length - 1) * vocab)]);
      // The cache holds the prompt: decoding continues from it.
      assert.equal((await runner.forward([7], tokens.length)).length, vocab);
    } finally {
      runner.dispose();
    }
  },
});
