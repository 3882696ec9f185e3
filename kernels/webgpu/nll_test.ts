/**
 * The scoring kernel against log-softmax and argmax computed here in float64: rows at positions
 * after the start (scores are indexed by position), a vocabulary that is not a multiple of the
 * workgroup, ties for the maximum, and rows without a target.
 */
import assert from "node:assert/strict";
import { pseudoRandom } from "../../core/test_values.ts";
import { adapterUnavailable, getGpu } from "./device.ts";
import { encodeDispatches, Kernels, STEP_STRIDE } from "./kernels.ts";

const unavailable = await adapterUnavailable();

Deno.test({
  name: "webgpu: nll scores each row's target and finds its first maximum",
  ignore: unavailable !== undefined,
  async fn() {
    const [T, vocab, pos] = [5, 1000, 3];
    const logits = pseudoRandom(T * vocab, 8).map((v) => 20 * v);
    // Row 1: its maximum twice (the first, at 17, wins); row 4: every logit equal.
    logits[vocab + 17] = 50;
    logits[vocab + 900] = 50;
    logits.fill(-2, 4 * vocab, 5 * vocab);
    const targets = Int32Array.from([-1, -1, -1, 7, 17, -1, 999, 0]); // by position
    const k = new Kernels(await getGpu());
    try {
      const step = k.buffer(STEP_STRIDE, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
      k.device.queue.writeBuffer(step, 0, new Uint32Array([T, pos, 0, 0]));
      const scores = k.storage(8 * 8);
      const d = await k.nll(step, k.storage(logits), k.storage(targets), scores, vocab);
      const read = k.buffer(8 * 8, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
      const enc = k.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      encodeDispatches(pass, [d], T, 0);
      pass.end();
      enc.copyBufferToBuffer(scores, 0, read, 0, 8 * 8);
      k.device.queue.submit([enc.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const words = new Uint32Array(read.getMappedRange().slice(0));
      const floats = new Float32Array(words.buffer);
      for (let t = 0; t < T; t++) {
        const row = Array.from(logits.subarray(t * vocab, (t + 1) * vocab));
        const max = Math.max(...row);
        assert.equal(words[2 * (pos + t) + 1], row.indexOf(max), `argmax of row ${t}`);
        const target = targets[pos + t]!;
        const nll = floats[2 * (pos + t)]!;
        if (target < 0) {
          assert.ok(Number.isNaN(nll), `row ${t} has no target`);
          continue;
        }
        const lse = Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0)) + max;
        const expected = lse - row[target]!;
        assert.ok(
          Math.abs(nll - expected) <= 1e-5 * Math.max(1, expected),
          `row ${t}: ${nll} vs ${expected}`,
        );
      }
      assert.deepEqual([...words.subarray(0, 2 * pos)], new Array(2 * pos).fill(0), "rows before");
    } finally {
      k.destroy();
    }
  },
});

Deno.test({
  name: "webgpu: nll refuses an empty vocabulary",
  ignore: unavailable !== undefined,
  async fn() {
    const k = new Kernels(await getGpu());
    try {
      const b = k.storage(16);
      await assert.rejects(k.nll(b, b, b, b, 0), RangeError);
    } finally {
      k.destroy();
    }
  },
});
