/** The window store keeps one set of windows on the device, matched by the arrays' identity. */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { getGpu } from "./device.ts";
import { GpuWindowInputs } from "./window_inputs.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const unavailable = await createWebGpuBackend().unavailable();

/** A device buffer's contents as float32. */
async function readBack(b: GPUBuffer): Promise<Float32Array> {
  const { device } = await getGpu();
  const staging = device.createBuffer({
    size: b.size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(b, 0, staging, 0, b.size);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange()).slice();
  staging.unmap();
  staging.destroy();
  return out;
}

Deno.test({
  name: "webgpu: window store uploads a set once, replaces it by another, keeps outputs",
  ignore: unavailable !== undefined,
  async fn() {
    const store = new GpuWindowInputs(await getGpu());
    try {
      const xs = [5, 3].map((t, i) => pseudoRandom(t * 4, i + 1));
      assert.equal(store.holds(xs), false);
      const buffers = store.get(xs);
      assert.deepEqual(await Promise.all(buffers.map(readBack)), xs);
      // The same arrays: the same buffers. Equal values in other arrays are another set.
      assert.equal(store.get([...xs]), buffers);
      const copies = xs.map((x) => x.slice());
      assert.notEqual(store.get(copies), buffers);
      assert.ok(store.holds(copies) && !store.holds(xs) && !store.holds([copies[0]!]));
      // Kept outputs: buffers of the arrays' sizes, held for them.
      const ys = [new Float32Array(6), new Float32Array(2)];
      const kept = store.keep(ys);
      assert.deepEqual(kept.map((b) => b.size), [24, 8]);
      assert.ok(store.holds(ys) && !store.holds(copies));
      assert.equal(store.holds([]), false);
    } finally {
      store.clear();
    }
  },
});
