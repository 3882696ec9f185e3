/**
 * `WebGpuRunner.profile` (the per-dispatch GPU timings `fixtures/scale/profile.ts` prints) on the
 * conformance suite's synthetic model: every kind of dispatch a prefill and a decode step run is
 * timed and counted, the KV cache's length is left alone, and a pass that does not continue the
 * cache is refused.
 *
 * @module
 */
import assert from "node:assert/strict";
import { adapterUnavailable, getGpu } from "../kernels/webgpu/device.ts";
import { webgpuBackend, WebGpuRunner } from "../kernels/webgpu/backend.ts";
import { syntheticModel } from "./backend_conformance.ts";

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
      // Decoding: the split attention and its combine, once a layer each.
      const decode = await runner.profile([9], 6);
      assert.equal(count(decode, "attention"), layers);
      assert.equal(count(decode, "attention combine"), layers);
      await assert.rejects(runner.profile([], 6), RangeError);
    } finally {
      runner.dispose();
    }
  },
});
